-- GET each path of BENCH_PATHS (one per line) in turn: read by id, the pain search,
-- $pain-response. Responses that are not 2xx are counted; done() prints one JSON line.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local paths = {}
local counter = 0

init = function(args)
  paths = common.read_lines(os.getenv("BENCH_PATHS"))
end

request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], common.get_headers, nil)
end

response = function(status, headers, body)
  common.check_status(status)
end

common.install()
