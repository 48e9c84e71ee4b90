-- wrk script: POST one fixed body of N events to /api/v1/events (no event ids).
-- Usage: wrk -s bench/events.lua URL -- APP_KEY EVENTS
-- The body is built once per thread, so wrk stays on its fast path (no Lua call per request).

local function event(i)
  return string.format(
    '{"name":"page_view","user":"user-%d","properties":{"path":"/pricing","plan":"pro","step":%d}}',
    i % 50, i)
end

function init(args)
  local parts = {}
  for i = 1, tonumber(args[2] or "1") do
    parts[i] = event(i)
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Tally-Key"] = args[1]
  wrk.body = '{"events":[' .. table.concat(parts, ",") .. "]}"
end
