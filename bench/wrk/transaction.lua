-- POST the transaction Bundles of BENCH_BUNDLES (one Bundle per line) to /fhir in turn. Every
-- UUID in them was written with the marker "@@@@@@@@" as its first 8 hex digits; each request
-- replaces it with a number of its own (BENCH_SALT's 3 hex digits + a 5-digit counter), so
-- every POST carries new UUIDs. Responses that are not 2xx are counted.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local bundles = {}
local counter = 0
local salt = os.getenv("BENCH_SALT") or "000"
local headers = common.with(common.json_headers, { ["Prefer"] = "return=minimal" })

init = function(args)
  bundles = common.read_lines(os.getenv("BENCH_BUNDLES"))
end

request = function()
  counter = counter + 1
  local body = bundles[(counter % #bundles) + 1]
  local prefix = string.format("%s%05x", salt, counter % 0x100000)
  return wrk.format("POST", "/fhir", headers, (string.gsub(body, "@@@@@@@@", prefix)))
end

response = function(status, headers, body)
  common.check_status(status)
end

common.install()
