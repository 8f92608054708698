-- Shared by the wrk scripts here (loaded with dofile from BENCH_LUA_DIR): request headers (a bearer
-- token when BENCH_TOKEN is set), counting responses that are not 2xx (wrk itself counts only
-- those over 399), reading files, and done(), which prints one JSON line that bench/harness.py
-- parses. Counters are globals of the thread's Lua state (`counter_<name>`, raised with
-- common.count), which done() reads from each thread with thread:get.
local common = {}

common.counter_names = {}

function common.counter(name)
  common.counter_names[#common.counter_names + 1] = name
  _G["counter_" .. name] = 0
end

function common.count(name)
  local key = "counter_" .. name
  _G[key] = _G[key] + 1
end

common.counter("non2xx")

common.json_headers = { ["Content-Type"] = "application/fhir+json" }
common.get_headers = {}
if os.getenv("BENCH_TOKEN") then
  local bearer = "Bearer " .. os.getenv("BENCH_TOKEN")
  common.json_headers["Authorization"] = bearer
  common.get_headers["Authorization"] = bearer
end

function common.with(headers, extra)
  local out = {}
  for k, v in pairs(headers) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

function common.read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  return lines
end

function common.read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

-- a response header, whatever the case the server wrote its name in
function common.header(headers, name)
  return headers[name] or headers[string.lower(name)]
end

function common.check_status(status)
  if status < 200 or status > 299 then
    common.count("non2xx")
    return false
  end
  return true
end

local threads = {}

function common.install()
  setup = function(thread)
    threads[#threads + 1] = thread
  end
  done = function(summary, latency, requests)
    local e = summary.errors
    local parts = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"p50_us":%d', latency:percentile(50)),
      string.format('"p99_us":%d', latency:percentile(99)),
      string.format('"socket_errors":%d', e.connect + e.read + e.write + e.timeout),
      string.format('"status_errors":%d', e.status),
    }
    for _, name in ipairs(common.counter_names) do
      local total = 0
      for _, thread in ipairs(threads) do
        total = total + (thread:get("counter_" .. name) or 0)
      end
      parts[#parts + 1] = string.format('"%s":%d', name, total)
    end
    io.write("{" .. table.concat(parts, ",") .. "}\n")
  end
end

return common
