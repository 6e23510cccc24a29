-- c50k's wrk script: GET requests cycled over the given paths, plus what wrk does not count
-- itself (responses per status code, bodies carrying "error", per-second throughput), printed
-- as one line `C50K_WRK_REPORT <json>` when the run is done.
--
--   wrk -s wrk_report.lua URL -- /items/1 /items/2 ...   ("PUT /items/3": a write)
--   wrk -s wrk_report.lua URL -- @/path/to/file      (one path a line; for long lists)
--   wrk -s wrk_report.lua URL                        (the URL's own path)
--
-- wrk runs this file in a separate Lua state per thread (init, request, response) and in a
-- main state (setup, done); counters cross between them only through thread:get().

local has_ffi, ffi = pcall(require, "ffi")

-- Seconds on a monotonic clock: LuaJIT's ffi reaches clock_gettime; plain Lua only has
-- os.time(), whose whole seconds still fill the per-second timeline, just less evenly.
local now = os.time
if has_ffi then
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } c50k_timespec;
    int clock_gettime(int clock_id, c50k_timespec *tp);
    typedef struct {
      uint64_t count; uint64_t limit; uint64_t min; uint64_t max; uint64_t data[?];
    } c50k_wrk_stats;
  ]])
  local timespec = ffi.new("c50k_timespec")
  local CLOCK_MONOTONIC = 1
  now = function()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
  end
end

-- Main state --------------------------------------------------------------------------------

local threads = {}

function setup(thread)
  thread:set("c50k_thread_index", #threads)
  table.insert(threads, thread)
end

-- Thread state ------------------------------------------------------------------------------

local function load_paths(args)
  local paths = {}
  -- args[0] is the URL; the script's own arguments start at 1.
  local first = args[1]
  if first and first:sub(1, 1) == "@" then
    for line in io.lines(first:sub(2)) do
      if line ~= "" then table.insert(paths, line) end
    end
  else
    local i = 1
    while args[i] do
      table.insert(paths, args[i])
      i = i + 1
    end
  end
  return paths
end

-- Lines: "R responses error_bodies body_bytes", "S status count", "T second ok bad".
local function serialize(c)
  local lines = { string.format("R %.0f %.0f %.0f", c.responses, c.error_bodies, c.body_bytes) }
  for status, n in pairs(c.status) do
    table.insert(lines, string.format("S %d %.0f", status, n))
  end
  for second, n in pairs(c.ok) do
    table.insert(lines, string.format("T %d %.0f %.0f", second, n, c.bad[second] or 0))
  end
  return table.concat(lines, "\n")
end

function init(args)
  local paths = load_paths(args)
  if #paths == 0 then paths = { wrk.path } end
  -- Pre-built requests: formatting one per request would cost more than serving it.
  c50k_requests = {}
  -- "PUT /items/7" writes a small JSON object there (the db scenario's write mix).
  local put_headers = { ["Content-Type"] = "application/json" }
  for i, path in ipairs(paths) do
    if path:sub(1, 4) == "PUT " then
      c50k_requests[i] = wrk.format("PUT", path:sub(5), put_headers, '{"bench":true}')
    else
      c50k_requests[i] = wrk.format("GET", path)
    end
  end
  -- Threads start at well-spread offsets (golden-ratio steps) without knowing how many
  -- threads there are, so they do not all hit the same items in lockstep.
  local index = c50k_thread_index or 0
  c50k_next = math.floor(#c50k_requests * ((index * 0.6180339887498949) % 1))
  c50k = { responses = 0, status = {}, error_bodies = 0, body_bytes = 0, ok = {}, bad = {} }
  c50k_started = now()
  -- thread:get() copies strings and numbers safely, but wrk 4.1.0 pops the Lua stack once
  -- too often after copying a table (script_copy_value pops it, thread:get pops again), which
  -- crashes on nested tables. So done() asks for `c50k_counters`, a global that does not
  -- exist: this __index builds it as one string, in this thread's state, once it has stopped.
  setmetatable(_G, {
    __index = function(_, name)
      if name == "c50k_counters" then return serialize(c50k) end
    end,
  })
end

function request()
  local req = c50k_requests[c50k_next + 1]
  c50k_next = (c50k_next + 1) % #c50k_requests
  return req
end

local find, floor = string.find, math.floor

function response(status, headers, body)
  local c = c50k
  c.responses = c.responses + 1
  c.status[status] = (c.status[status] or 0) + 1
  c.body_bytes = c.body_bytes + #body
  local bad = status < 200 or status > 299
  -- A 200 can carry {"error": ...}: the status alone proves nothing about the payload.
  if find(body, '"error"', 1, true) then
    c.error_bodies = c.error_bodies + 1
    bad = true
  end
  local second = floor(now() - c50k_started)
  c.ok[second] = (c.ok[second] or 0) + 1
  if bad then c.bad[second] = (c.bad[second] or 0) + 1 end
end

-- Report ------------------------------------------------------------------------------------

local format = string.format

local function number(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == floor(n) and math.abs(n) < 2 ^ 53 then return format("%.0f", n) end
  return format("%.17g", n)
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(ch)
    return format("\\u%04x", ch:byte())
  end) .. '"'
end

local function encode(value)
  local kind = type(value)
  if kind == "number" then return number(value) end
  if kind == "string" then return quote(value) end
  if kind == "boolean" then return tostring(value) end
  if kind ~= "table" then return "null" end
  local parts = {}
  if #value > 0 then
    for i = 1, #value do parts[i] = encode(value[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(value) do table.insert(keys, k) end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for i, k in ipairs(keys) do
    local key = type(k) == "number" and number(k) or tostring(k)
    parts[i] = quote(key) .. ":" .. encode(value[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Keys become strings: a table keyed 0, 1, 2... would otherwise encode as a JSON array.
local function add(total, k, n)
  local key = number(k)
  total[key] = (total[key] or 0) + n
end

-- wrk's latency histogram, value (µs) → count. latency(i) returns the i-th non-empty bucket
-- but scans from the minimum on every call, so reading the whole histogram through it costs
-- buckets × range; with ffi the buckets are read straight from wrk's stats struct instead,
-- once its layout is proved by matching min, max and the sample count.
local function histogram(latency)
  local buckets, total = {}, 0
  if has_ffi then
    local ok, stats = pcall(function() return ffi.cast("c50k_wrk_stats **", latency)[0] end)
    if ok and tonumber(stats.count) == 0 then return buckets, 0, "ffi" end
    if ok and tonumber(stats.min) == latency.min and tonumber(stats.max) == latency.max then
      for v = tonumber(stats.min), tonumber(stats.max) do
        local n = tonumber(stats.data[v])
        if n > 0 then
          table.insert(buckets, format('"%d":%s', v, number(n)))
          total = total + n
        end
      end
      if total == tonumber(stats.count) then return buckets, total, "ffi" end
    end
    buckets, total = {}, 0
  end
  for i = 1, #latency do
    local v, n = latency(i)
    table.insert(buckets, format('"%d":%s', v, number(n)))
    total = total + n
  end
  return buckets, total, "wrk_stats_call"
end

function done(summary, latency, requests)
  local merged = { responses = 0, status = {}, error_bodies = 0, body_bytes = 0 }
  local timeline = {}
  for _, thread in ipairs(threads) do
    for line in thread:get("c50k_counters"):gmatch("[^\n]+") do
      local kind, a, b, c = line:match("^(%a) (%d+) (%d+) ?(%d*)$")
      a, b, c = tonumber(a), tonumber(b), tonumber(c)
      if kind == "R" then
        merged.responses = merged.responses + a
        merged.error_bodies = merged.error_bodies + b
        merged.body_bytes = merged.body_bytes + c
      elseif kind == "S" then
        add(merged.status, a, b)
      elseif kind == "T" then
        -- Seconds since each thread started: threads start within microseconds of each other.
        local key = number(a)
        local before = timeline[key] or { 0, 0 }
        timeline[key] = { before[1] + b, before[2] + c }
      end
    end
  end
  local buckets, total, source = histogram(latency)
  local report = {
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    errors = summary.errors,
    threads = #threads,
    responses = merged.responses,
    status = merged.status,
    error_bodies = merged.error_bodies,
    body_bytes = merged.body_bytes,
    timeline = timeline,
    latency_source = source,
    latency_count = total,
  }
  -- The histogram is spliced in as text: it may hold many thousand buckets, and it is
  -- wrk's own, after wrk's coordinated-omission correction (c50k.bench.wrk undoes it).
  local json = encode(report)
  json = json:sub(1, -2) .. ',"latency_corrected":{' .. table.concat(buckets, ",") .. "}}"
  io.write("C50K_WRK_REPORT ", json, "\n")
  io.flush()
end
