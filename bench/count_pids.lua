-- wrk script: count responses per worker pid ("(pid N)" in the body) and print
-- one line "BENCHJSON {...}" with the totals, latency percentiles (µs) and errors.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  pids = {}
end

function response(status, headers, body)
  local pid = string.match(body, "pid (%d+)")
  if pid then
    pids[pid] = (pids[pid] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for pid, n in pairs(thread:get("pids")) do
      total[pid] = (total[pid] or 0) + n
    end
  end
  local parts = {}
  for pid, n in pairs(total) do
    table.insert(parts, string.format('"%s":%d', pid, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"pids":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
