-- POST /classify with a rotating set of utterances; counts 5xx answers apart from the rest,
-- since wrk's own "Non-2xx or 3xx" line mixes a 422 (bad input, the right answer) with a 500.
local texts = {
  "show me today's news", "update my profile", "is the shop open on sunday", "play something relaxing",
  "what's the weather tomorrow in lisbon", "remind me to call mum at six", "book a meeting with anna on friday",
  "cancel my subscription please", "what is the meaning of life", "how do i get to the station",
}
local bodies = {}
for i, text in ipairs(texts) do
  bodies[i] = '{"text": "' .. text .. '"}'
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Globals, not locals: done() reads each thread's counters with thread:get().
counter, server_errors, client_errors = 0, 0, 0
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])
end

function response(status, headers, body)
  if status >= 500 then
    server_errors = server_errors + 1
  elseif status >= 400 then
    client_errors = client_errors + 1
  end
end

function done(summary, latency, requests)
  local fives, fours = 0, 0
  for _, thread in ipairs(threads) do
    fives = fives + thread:get("server_errors")
    fours = fours + thread:get("client_errors")
  end
  io.write(string.format("RESULT requests=%d 5xx=%d 4xx=%d socket_errors=%d p50_ms=%.2f p99_ms=%.2f rps=%.1f\n",
    summary.requests, fives, fours,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
