-- The admin listener (docs/prometheus.md, docs/introspection.md): GET
-- /metrics (Prometheus text format 0.0.4, every worker's figures summed)
-- and, when enabled, GET /introspect (JSON) and /introspect.txt (a page a
-- person reads): the requests in flight with their route, age and
-- traceback, the pools, loop lag and Lua memory.
--
-- Who serves it: a single process serves it itself; with --workers the
-- supervisor does. Counts live in shared memory (src/prometheus.c), so the
-- supervisor sums them without asking anyone; for introspection it asks
-- each worker through its slot (a request number the worker's admin
-- coroutine answers within 50 ms) and merges the answers.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local log = require("baseplate.log")
local http = require("baseplate.http")
local config = require("baseplate.lib.config")
local cjson = require("cjson")
require("baseplate.server.http") -- bp_http_server_* declarations
require("baseplate.server") -- bp_listener_* declarations
require("baseplate.span") -- bp_prom_slot

ffi.cdef([[
int bp_prom_init(int nslots, int max_series, char *err, size_t errlen);
int bp_prom_attach(int fd, int slot, char *err, size_t errlen);
int bp_prom_fd(void);
int bp_prom_nslots(void);
void bp_prom_close(void);
int bp_prom_observe(bp_baseplate_t *bp);
void bp_prom_set_runtime(double open_connections, double active_requests,
                         double lua_memory_bytes, double loop_lag_seconds);
int bp_prom_set_pool(int i, const char *name, double size, double in_use, double waiters);
int bp_prom_set_pool_family(int i, const char *family, double open, double idle);
void bp_prom_set_npools(int n);
int bp_prom_retire(int slot);
const char *bp_prom_scrape(size_t *len);
uint64_t bp_prom_introspect_request(int slot);
uint64_t bp_prom_introspect_answer(int slot, const char **text, size_t *len);
int bp_prom_introspect_publish(const char *text, size_t len);
int bp_prom_introspect_pending(void);
int setenv(const char *name, const char *value, int overwrite);
]])

local C = core.C
local M = {}
local alog = log.get_logger("baseplate.server.admin")

M.INTROSPECT_MAX = 256 * 1024 -- BP_PROM_INTROSPECT_MAX
M.POLL = 0.05 -- how often a worker looks for an introspection request
M.ANSWER_TIMEOUT = 1 -- how long the supervisor waits for a worker's answer

local allow = require("baseplate.server.admin_allow")
M.parse_allow, M.allowed = allow.parse, allow.allowed

--- The admin keys of [server:NAME] (docs/prometheus.md): nil when
--- metrics.prometheus.bind is not set. `fail(key, reason)` reports a bad
--- value (a start-up error naming file, section and key).
function M.settings(section, fail)
    section = section or {}
    local bind = section["metrics.prometheus.bind"]
    local function check(key, parser, default)
        local text = section[key]
        if text == nil or text == "" then return default end
        local ok, v = pcall(parser, text)
        if not ok then fail(key, runtime.message_of(v)) end
        return v
    end
    local s = {
        max_series = check("metrics.prometheus.max_series", require("baseplate.server.base").whole(16, 100000), 1000),
        introspection = check("introspection.enabled", config.Boolean, false),
        allow = check("admin.allow", M.parse_allow, {}),
    }
    if s.allow == nil then s.allow = false end -- "*": anyone
    if bind == nil or bind == "" then
        for _, key in ipairs({ "metrics.prometheus.max_series", "introspection.enabled", "admin.allow" }) do
            if section[key] and section[key] ~= "" then
                fail(key, "needs metrics.prometheus.bind (the admin listener)")
            end
        end
        return nil
    end
    if bind:find("/", 1, true) then
        fail("metrics.prometheus.bind", "expected host:port or [v6addr]:port, got " .. config.quote(bind))
    end
    s.bind = bind
    return s
end

--- Make the shared memory: `nslots` worker slots (1 for a single process).
function M.init(nslots, settings, fail)
    if C.bp_prom_init(nslots, settings.max_series, core.errbuf, core.errbuf_size) ~= 0 then
        fail("metrics.prometheus.bind", core.errmsg())
    end
    if nslots > 1 then C.setenv("BASEPLATE_PROM_FD", tostring(C.bp_prom_fd()), 1) end
end

--- A worker: map the supervisor's shared memory, into slot
--- BASEPLATE_WORKER_SLOT. Returns true when it did.
function M.attach(fail)
    local fd = tonumber(os.getenv("BASEPLATE_PROM_FD") or "")
    local slot = tonumber(os.getenv("BASEPLATE_WORKER_SLOT") or "")
    if not fd or not slot then return false end
    if C.bp_prom_attach(fd, slot, core.errbuf, core.errbuf_size) ~= 0 then
        fail("metrics.prometheus.bind", core.errmsg())
    end
    return true
end

--- Record the spans of the application's Baseplate (if it has one).
function M.observe(app)
    local bp = type(app) == "table" and app.baseplate
    if bp and bp.c ~= nil then
        local rc = C.bp_prom_observe(bp.c)
        if rc ~= 0 then error("cannot record the spans: " .. core.strerror(rc), 0) end
    end
end

-- The pools of the application's context: { name, size, in_use, waiters }.
local function pools_of(app)
    local list = {}
    local bp = type(app) == "table" and app.baseplate
    local context = bp and rawget(bp, "_context")
    if type(context) ~= "table" then return list end
    local names = {}
    for name in pairs(context) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
        local item = context[name]
        local pool = type(item) == "table" and rawget(item, "pool")
        if type(pool) == "table" and type(pool.stats) == "function" then
            local ok, s = pcall(pool.stats, pool)
            if ok and type(s) == "table" then
                local family = rawget(item, "prom_pool")
                list[#list + 1] = { name = name, size = s.size or 0, in_use = s.in_use or 0,
                    waiters = type(pool.waiters) == "table" and #pool.waiters or 0,
                    family = type(family) == "string" and family or "",
                    open = s.open or 0, idle = s.open_and_available or 0 }
            end
        end
    end
    return list
end

-- The route of a request in the introspection answer, from what tostring
-- says ("request GET /sleep (route sleep)", "thrift call get_user").
function M.route_of(desc)
    return desc:match("%(route ([^)]*)%)$") or desc:match("^thrift call (.*)$")
end
local route_of = M.route_of

-- This process's figures, for the introspection answer.
local function snapshot(server, app, lag, except)
    local requests = {}
    for _, r in ipairs(runtime.in_flight()) do
        if r.what ~= except then
            local ok, desc = pcall(tostring, r.what)
            desc = ok and desc or "?"
            requests[#requests + 1] = { route = M.route_of(desc), what = desc,
                age_seconds = r.age, traceback = r.traceback }
        end
    end
    return {
        worker = C.bp_prom_slot(),
        pid = ffi.C.getpid(),
        open_connections = server and server.connections and server:connections() or 0,
        active_requests = server and server.active_requests and server:active_requests() or 0,
        lua_memory_bytes = math.floor(collectgarbage("count") * 1024),
        loop_lag_seconds = lag,
        requests = requests,
        pools = pools_of(app),
    }
end

-- cjson writes an empty table as {}: empty lists go as this mark, and
-- are written [] after encoding.
local EMPTY = "\1baseplate-empty-list\1"
local function json(t)
    local function mark(w)
        if type(w) == "table" then
            if w.requests and #w.requests == 0 then w.requests = EMPTY end
            if w.pools and #w.pools == 0 then w.pools = EMPTY end
        end
    end
    if t.workers then
        if #t.workers == 0 then t.workers = EMPTY end
        for _, w in ipairs(type(t.workers) == "table" and t.workers or {}) do mark(w) end
    else
        mark(t)
    end
    return (cjson.encode(t):gsub('"\\u0001baseplate%-empty%-list\\u0001"', "[]"))
end
M.json = json

-- JSON of a snapshot within `max` bytes: tracebacks are cut, then requests
-- dropped, with "truncated": true.
local function encode_bounded(snap, max)
    local text = json(snap)
    if #text <= max then return text end
    snap.truncated = true
    for _, r in ipairs(snap.requests) do r.traceback = r.traceback:sub(1, 400) end
    text = json(snap)
    while #text > max and #snap.requests > 0 do
        for i = #snap.requests, math.max(1, math.floor(#snap.requests / 2)), -1 do snap.requests[i] = nil end
        text = json(snap)
    end
    return text
end
M.encode_bounded = encode_bounded


--- The pools of `app`'s context attributes into this process's slot (at
--- most 32; a client's factory names its library in `prom_pool`).
function M.report_pools(app)
    local pools = pools_of(app)
    for i, p in ipairs(pools) do
        if i > 32 then break end
        C.bp_prom_set_pool(i - 1, p.name, p.size, p.in_use, p.waiters)
        C.bp_prom_set_pool_family(i - 1, p.family, p.open, p.idle)
    end
    C.bp_prom_set_npools(math.min(#pools, 32))
end

--- A worker or single process: every second, the runtime and pool gauges
--- into its slot (and the loop lag: how late that wait ended); with
--- `answer` (a worker under a supervisor), every POLL seconds, an
--- introspection request answered.
function M.start_worker(server, app, answer)
    local state = { lag = 0 }
    M.local_state = { server = server, app = app, state = state }
    local function gauges()
        C.bp_prom_set_runtime(server.connections and server:connections() or 0,
            server.active_requests and server:active_requests() or 0,
            collectgarbage("count") * 1024, state.lag)
        M.report_pools(app)
    end
    runtime.spawn(function()
        local next_gauges = 0
        gauges()
        while not server.stopped do
            local tick = answer and M.POLL or 1
            local t0 = C.bp_monotonic()
            runtime.sleep(tick)
            local lag = C.bp_monotonic() - t0 - tick
            state.lag = lag > 0 and lag or 0
            if answer and C.bp_prom_introspect_pending() == 1 then
                local ok, err = pcall(function()
                    local text = encode_bounded(snapshot(server, app, state.lag), M.INTROSPECT_MAX)
                    C.bp_prom_introspect_publish(text, #text)
                end)
                if not ok then alog:error("introspection failed: %s", tostring(err)) end
            end
            next_gauges = next_gauges + tick
            if next_gauges >= 1 then
                next_gauges = 0
                local ok, err = pcall(gauges)
                if not ok then alog:error("runtime gauges failed: %s", tostring(err)) end
            end
        end
    end)
end

-- --- the endpoints ------------------------------------------------------------------------

local function render_text(workers)
    local out = {}
    local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
    for _, w in ipairs(workers) do
        if w.error then
            add("worker %s (PID %s): %s\n\n", tostring(w.worker), tostring(w.pid), w.error)
        else
            add("worker %d (PID %d): %d connection(s) open, %d request(s) active, "
                .. "Lua memory %.1f KB, loop lag %.1f ms\n", w.worker, w.pid, w.open_connections,
                w.active_requests, w.lua_memory_bytes / 1024, w.loop_lag_seconds * 1000)
            for _, p in ipairs(w.pools or {}) do
                add("  pool %s: size %d, in use %d, waiting %d\n", p.name, p.size, p.in_use, p.waiters)
            end
            add("  %d request(s) in flight%s\n", #w.requests, w.truncated and " (list truncated)" or "")
            for _, r in ipairs(w.requests) do
                add("\n  %s, for %.3f s\n", r.what, r.age_seconds)
                add("    %s\n", (r.traceback or ""):gsub("\n", "\n    "))
            end
            add("\n")
        end
    end
    return table.concat(out)
end

--- Serve the admin endpoints on `settings.bind`. `source(request, worker)`
--- returns the list of worker answers (tables) for /introspect.
function M.serve(settings, source, fail)
    local admin = http.app({})
    local function guard(request)
        if not M.allowed(request.remote_addr, settings.allow) then
            http.abort_error(403, "the admin endpoints answer loopback only (admin.allow)")
        end
    end
    local len_p = ffi.new("size_t[1]")
    admin:get("metrics", "/metrics", function(request)
        guard(request)
        local p = C.bp_prom_scrape(len_p)
        if p == nil then http.abort_error(500, "out of memory") end
        return http.response({ status = 200, body = ffi.string(p, len_p[0]),
            content_type = "text/plain; version=0.0.4; charset=utf-8" })
    end)
    local function introspect(request, as_text)
        guard(request)
        if not settings.introspection then
            http.abort_error(404, "introspection is off (introspection.enabled)")
        end
        local w = request.query.worker
        local worker = w and tonumber(w)
        if w and (not worker or worker < 1 or worker ~= math.floor(worker)) then
            http.abort_error(400, "worker: expected a worker number, got " .. config.quote(w))
        end
        local workers = source(request, worker)
        if worker and #workers == 0 then http.abort_error(404, "no worker " .. worker) end
        if as_text then
            return http.response({ status = 200, body = render_text(workers),
                content_type = "text/plain; charset=utf-8" })
        end
        return http.response({ status = 200, body = json({ workers = workers }),
            content_type = "application/json" })
    end
    admin:get("introspect", "/introspect", function(request) return introspect(request, false) end)
    admin:get("introspect_txt", "/introspect.txt", function(request) return introspect(request, true) end)

    local l = C.bp_listener_open(settings.bind, 0, 0, core.errbuf, core.errbuf_size)
    if l == nil then fail("metrics.prometheus.bind", core.errmsg()) end
    l = ffi.gc(l, C.bp_listener_free)
    local o = ffi.new("bp_http_server_options_t")
    C.bp_http_server_options_init(o)
    local c = C.bp_http_server_start(admin.c, l, o, core.errbuf, core.errbuf_size)
    if c == nil then fail("metrics.prometheus.bind", core.errmsg()) end
    M.admin = { app = admin, listener = l, server = c }
    alog:info("Admin endpoints on %s: /metrics%s", ffi.string(C.bp_listener_describe(l)),
        settings.introspection and ", /introspect, /introspect.txt" or "")
    return M.admin
end

--- /introspect of a single process: its own snapshot.
function M.local_source(request, worker)
    local st = M.local_state or {}
    if worker and worker ~= C.bp_prom_slot() then return {} end
    local snap = snapshot(st.server, st.app, st.state and st.state.lag or 0, request)
    return { snap }
end

--- /introspect of a supervisor: ask each ready worker (`workers()` lists
--- { slot, pid }) and wait up to ANSWER_TIMEOUT for the answers.
function M.supervisor_source(workers)
    local busy = false
    local text_p, len_p = ffi.new("const char *[1]"), ffi.new("size_t[1]")
    return function(_, worker)
        while busy do runtime.sleep(0.01) end -- one question at a time: the answers share the slot
        busy = true
        local asked = {}
        for _, w in ipairs(workers()) do
            if not worker or w.slot == worker then
                asked[#asked + 1] = { slot = w.slot, pid = w.pid, seq = C.bp_prom_introspect_request(w.slot) }
            end
        end
        local deadline = C.bp_monotonic() + M.ANSWER_TIMEOUT
        local left = #asked
        while left > 0 do
            for _, a in ipairs(asked) do
                if not a.answer then
                    local ans = C.bp_prom_introspect_answer(a.slot, text_p, len_p)
                    if ans >= a.seq then
                        local ok, t = pcall(cjson.decode, ffi.string(text_p[0], len_p[0]))
                        a.answer = ok and t or { worker = a.slot, pid = a.pid, error = "unreadable answer" }
                        left = left - 1
                    end
                end
            end
            if left == 0 or C.bp_monotonic() > deadline then break end
            runtime.sleep(0.01)
        end
        busy = false
        local out = {}
        for _, a in ipairs(asked) do
            local w = a.answer or { worker = a.slot, pid = a.pid,
                error = string.format("no answer within %g s", M.ANSWER_TIMEOUT) }
            for _, r in ipairs(w.requests or {}) do r.route = r.route or route_of(r.what or "") end
            out[#out + 1] = w
        end
        return out
    end
end

return M
