-- The CRUD cycle of Health Samurai's fhir-server-performance-benchmark (k6/crud.js), in wrk.
-- Each virtual user (one per connection) repeats an iteration: create one resource of each type
-- in order (each referring to the resources of the iteration created before it), read each,
-- update each (one element changed), delete each in reverse order. Every HTTP request counts.
--
-- wrk does not say which connection a response belongs to, so each request carries an
-- X-Request-Id (the server echoes it) that names its user and step; the id of a created
-- resource comes from the Location header of the 201.
--
-- BENCH_TEMPLATES: per type three lines: the type, the create body, the update body (JSON on
-- one line; `__REF_<Type>__` stands for the id of the iteration's resource of that type,
-- `__ID__` for the id being updated). BENCH_SEEDS: lines `<Type> <id>` of resources created
-- before the run, referred to when the iteration's own create of that type failed.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
for _, name in ipairs({ "create", "read", "update", "delete", "lost", "failed_checks" }) do
  common.counter(name)
end

local types = {}
local create_body, update_body, seeds = {}, {}, {}
local steps = {}
local idle = {}
local inflight = {}
local sequence = 0
local json_headers = common.with(common.json_headers, {})
local get_headers = common.with(common.get_headers, {})

init = function(args)
  local lines = common.read_lines(os.getenv("BENCH_TEMPLATES"))
  for i = 1, #lines, 3 do
    local kind = lines[i]
    types[#types + 1] = kind
    create_body[kind] = lines[i + 1]
    update_body[kind] = lines[i + 2]
  end
  for _, line in ipairs(common.read_lines(os.getenv("BENCH_SEEDS"))) do
    local kind, id = string.match(line, "^(%S+) (%S+)$")
    seeds[kind] = id
  end
  for _, op in ipairs({ "create", "read", "update" }) do
    for _, kind in ipairs(types) do steps[#steps + 1] = { op = op, kind = kind } end
  end
  for i = #types, 1, -1 do steps[#steps + 1] = { op = "delete", kind = types[i] } end
end

local function references(user, template)
  return (string.gsub(template, "__REF_(%w+)__", function(kind)
    return user.ids[kind] or seeds[kind]
  end))
end

-- the user's next step: past the end a new iteration begins; the read, update and delete of a
-- type whose create failed are skipped
local function next_step(user)
  while true do
    if user.step > #steps then
      user.step = 1
      user.ids = {}
    end
    local step = steps[user.step]
    user.step = user.step + 1
    if step.op == "create" or user.ids[step.kind] then return step end
  end
end

request = function()
  local user = table.remove(idle) or { step = 1, ids = {} }
  local step = next_step(user)
  sequence = sequence + 1
  local rid = "crud-" .. sequence
  inflight[rid] = { user = user, step = step }
  local kind = step.kind
  if step.op == "create" then
    json_headers["X-Request-Id"] = rid
    return wrk.format("POST", "/fhir/" .. kind, json_headers,
                      references(user, create_body[kind]))
  end
  local path = "/fhir/" .. kind .. "/" .. user.ids[kind]
  if step.op == "update" then
    json_headers["X-Request-Id"] = rid
    local body = string.gsub(references(user, update_body[kind]), "__ID__", user.ids[kind])
    return wrk.format("PUT", path, json_headers, body)
  end
  get_headers["X-Request-Id"] = rid
  return wrk.format(step.op == "read" and "GET" or "DELETE", path, get_headers, nil)
end

response = function(status, headers, body)
  local rid = common.header(headers, "X-Request-Id")
  local pending = rid and inflight[rid]
  if not pending then
    common.count("lost")
    common.check_status(status)
    return
  end
  inflight[rid] = nil
  local step, user = pending.step, pending.user
  common.count(step.op)
  local ok = common.check_status(status)
  if step.op == "create" and ok then
    local location = common.header(headers, "Location") or ""
    local id = string.match(location, "/" .. step.kind .. "/([^/]+)/_history/")
    if id then user.ids[step.kind] = id else common.count("failed_checks") end
  end
  idle[#idle + 1] = user
end

common.install()
