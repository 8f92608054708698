-- GET each path of BENCH_PATHS (one per line) in turn; done() prints one JSON line.
local paths = {}
local counter = 0

init = function(args)
  for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
end

request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], nil, nil)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"socket_errors":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
