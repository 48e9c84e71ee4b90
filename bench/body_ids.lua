-- wrk script: POST a body read from a file, with the given headers, making it unique per request:
-- every __ID__ in the file is replaced by NONCE-THREAD-REQUEST (the body file follows each with
-- the event's index, so that every event gets an id no other event has).
-- Usage: wrk -s bench/body_ids.lua URL -- BODY_FILE NONCE ["Name: value" ...]
-- The nonce (new for every wrk run, chosen by the driver) keeps the warm-up's ids apart from the
-- measured run's, the thread number (set in setup) keeps threads apart, and a per-thread counter
-- keeps requests apart. The file is split once, in init; each request is one table.concat. Still,
-- defining request() makes wrk call Lua for every request, which costs it a little CPU.

local MARK = "__ID__"
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

local pieces, prefix, counter = {}, "", 0

local function split(text, mark)
  local parts, start = {}, 1
  while true do
    local first, last = text:find(mark, start, true)
    if not first then
      parts[#parts + 1] = text:sub(start)
      return parts
    end
    parts[#parts + 1] = text:sub(start, first - 1)
    start = last + 1
  end
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  pieces = split(file:read("*a"), MARK)
  file:close()
  assert(#pieces > 1, "the body file has no " .. MARK)
  prefix = string.format("%s-%d-", args[2], thread_no or 0)
  wrk.method = "POST"
  for i = 3, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    assert(name, "a header must be 'Name: value': " .. args[i])
    wrk.headers[name] = value
  end
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, table.concat(pieces, prefix .. counter))
end
