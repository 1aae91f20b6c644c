-- Shared by every scripts/bench scenario (loaded with dofile from the repository root):
-- keeps the threads, and done() prints wrk's figures as one JSON line, "BENCH_JSON {...}",
-- which scripts/lib/bench.py reads. A script that counts things per thread lists the
-- names of its global counters in `counter_names`; done() sums them over the threads.

local threads = {}
local thread_count = 0
counter_names = counter_names or {}

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local counters = {}
  for _, name in ipairs(counter_names) do
    local total = 0
    for _, thread in ipairs(threads) do
      total = total + (tonumber(thread:get(name)) or 0)
    end
    table.insert(counters, string.format('"%s":%d', name, total))
  end
  local e = summary.errors
  local pct = {}
  for _, p in ipairs({50, 75, 90, 99, 99.9}) do
    table.insert(pct, string.format('"%s":%d', tostring(p), latency:percentile(p)))
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"percentiles":{%s}},' ..
    '"counters":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max, table.concat(pct, ","),
    table.concat(counters, ",")))
end
