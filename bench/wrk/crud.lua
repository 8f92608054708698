-- One wrk script for the create / read / search / update workloads (BENCH_MODE). Ids to read or update
-- come from BENCH_IDS (one per line); the request body from BENCH_BODY, where __ID__ is replaced
-- by the id being updated. done() prints one JSON line that bench/run.py parses.
local mode = os.getenv("BENCH_MODE")
local resource_type = os.getenv("BENCH_TYPE") or "Observation"
local ids = {}
local body = ""
local counter = 0
local headers = { ["Content-Type"] = "application/fhir+json" }
local read_headers = nil
-- BENCH_TOKEN: a bearer token sent with every request (the server requires one)
if os.getenv("BENCH_TOKEN") then
  headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  read_headers = { ["Authorization"] = headers["Authorization"] }
end

init = function(args)
  if os.getenv("BENCH_IDS") then
    for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
  end
  if os.getenv("BENCH_BODY") then
    local f = io.open(os.getenv("BENCH_BODY"), "rb")
    body = f:read("*a")
    f:close()
  end
end

request = function()
  counter = counter + 1
  if mode == "create" then
    return wrk.format("POST", "/fhir/" .. resource_type, headers, body)
  end
  local id = ids[(counter % #ids) + 1]
  if mode == "read" then
    return wrk.format("GET", "/fhir/" .. resource_type .. "/" .. id, read_headers, nil)
  end
  if mode == "search" then
    return wrk.format("GET", "/fhir/" .. resource_type .. "?_id=" .. id .. "&code=72514-3",
                      read_headers, nil)
  end
  return wrk.format("PUT", "/fhir/" .. resource_type .. "/" .. id, headers,
                    (string.gsub(body, "__ID__", id)))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"socket_errors":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
