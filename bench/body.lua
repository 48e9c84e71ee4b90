-- wrk script: POST one fixed body, read from a file, with the given headers.
-- Usage: wrk -s bench/body.lua URL -- BODY_FILE ["Name: value" ...]
-- The body is set once per thread (no request() function), so wrk stays on its fast path: no Lua
-- call per request. bench/ingest.py writes the body file for each scenario.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    assert(name, "a header must be 'Name: value': " .. args[i])
    wrk.headers[name] = value
  end
end
