-- wrk script: POST N events to /api/v1/events, each with an event id no other request uses.
-- Usage: wrk -s bench/events_with_ids.lua URL -- APP_KEY EVENTS NONCE
-- An id is NONCE-THREAD-REQUEST-EVENT: the nonce (new for every wrk run, chosen by the driver)
-- keeps the warm-up's ids apart from the measured run's, the thread number (set in setup) keeps
-- threads apart, and a per-thread counter keeps requests apart. Defining request() makes wrk call
-- Lua for every request, which costs the load generator a little CPU.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

local events, prefix, counter = 1, "", 0

function init(args)
  events = tonumber(args[2] or "1")
  local nonce = args[3] or string.format("%d%06d", os.time(), math.random(0, 999999))
  prefix = string.format("%s-%d-", nonce, thread_no or 0)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Tally-Key"] = args[1]
end

function request()
  counter = counter + 1
  local parts = {}
  for i = 1, events do
    parts[i] = string.format(
      '{"id":"%s%d-%d","name":"page_view","user":"user-%d",'
        .. '"properties":{"path":"/pricing","plan":"pro","step":%d}}',
      prefix, counter, i, i % 50, i)
  end
  return wrk.format(nil, nil, nil, '{"events":[' .. table.concat(parts, ",") .. "]}")
end
