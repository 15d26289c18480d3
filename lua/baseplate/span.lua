-- Spans and trace context: the Lua face of include/baseplate/span.h.
--
--   local span = request.span:make_child("geocode", true, "maps")
--   span:with(function(s) ... end)      -- start; finish, with the error if fn fails
--
-- A Span wraps a C span. Observers see every event in the core: C observers
-- directly, Lua observers (span:register(observer), and the Baseplate's,
-- baseplate.Baseplate:register) through one C observer that queues the
-- events of the spans they watch (src/observer_lua.c). This module takes
-- that queue and calls the Lua observers in order, each under its own pcall
-- (one failing observer neither stops the others nor leaks the span): right
-- after a call of this API that queued something, when a job starts, and at
-- the end of each loop iteration for what the core did on its own.
local ffi = require("ffi")
local core = require("baseplate.core")
require("baseplate.runtime") -- declares bp_span_enter

ffi.cdef([[
typedef struct bp_span_s bp_span_t;
typedef struct {
  uint64_t trace_id;
  uint64_t parent_id;
  uint64_t span_id;
  int sampled;
  uint64_t flags;
  uint64_t trace_id_high;
} bp_trace_info_t;
void bp_trace_info_new(bp_trace_info_t *ti);
int bp_trace_info_from_upstream(bp_trace_info_t *ti, const char *trace_id, const char *parent_id,
                                const char *span_id, const char *sampled, const char *flags,
                                char *err, size_t errlen);
bp_span_t *bp_span_make_child(bp_span_t *parent, const char *name, int local,
                              const char *component_name, int *status);
int bp_span_start(bp_span_t *span);
int bp_span_set_tag(bp_span_t *span, const char *key, const char *value, int type);
int bp_span_incr_tag(bp_span_t *span, const char *key, double delta);
int bp_span_log(bp_span_t *span, const char *name, const char *payload);
int bp_span_finish(bp_span_t *span, const char *error);
const bp_trace_info_t *bp_span_trace(const bp_span_t *span);
const char *bp_span_name(const bp_span_t *span);
const char *bp_span_component(const bp_span_t *span);
int bp_span_kind(const bp_span_t *span);
int bp_span_set_metric_family(bp_span_t *span, const char *family, const char *labels,
                              const char *counter_labels, int success);
const char *bp_span_metric_family(const bp_span_t *span, const char **labels,
                                  const char **counter_labels, int *success);
int bp_prom_slot(void);
int bp_span_state(const bp_span_t *span);
const char *bp_span_trace_id_string(bp_span_t *span);
double bp_span_duration(const bp_span_t *span);
const char *bp_span_get_tag(const bp_span_t *span, const char *key, int *type);
int bp_span_set_edge_request(bp_span_t *span, const char *data, size_t len);
const char *bp_span_edge_request(const bp_span_t *span, size_t *len);
int bp_span_set_tracestate(bp_span_t *span, const char *value, size_t len);
const char *bp_span_tracestate(const bp_span_t *span);
typedef struct bp_baseplate_s bp_baseplate_t;
typedef struct {
  int type;
  int tag_type;
  bp_span_t *span;
  bp_span_t *child;
  uintptr_t addr;
  const char *a;
  const char *b;
  double delta;
} bp_observer_event_t;
int bp_baseplate_forward_to_lua(bp_baseplate_t *bp);
int bp_span_forward_to_lua(bp_span_t *span);
bp_baseplate_t *bp_span_baseplate(const bp_span_t *span);
const bp_observer_event_t *bp_observer_events_take(int *n);
]])

local C = core.C
local ffi_string, ffi_gc = ffi.string, ffi.gc
local type, tostring, pcall, setmetatable = type, tostring, pcall, setmetatable

local M = {}

local SERVER, CLIENT, LOCAL = 0, 1, 2
local TAG_STRING, TAG_NUMBER, TAG_BOOL = 0, 1, 2

local log
local function logger()
    if not log then log = require("baseplate.log").get_logger("baseplate.observers") end
    return log
end

local function u64(v)
    return (tostring(v):gsub("U?LL$", ""))
end
M.u64_string = u64

--------------------------------------------------------------------------------
-- TraceInfo

local TraceInfo = {}
TraceInfo.__index = TraceInfo
M.TraceInfo = TraceInfo

local function trace_info_of(ti)
    local sampled = nil
    if ti.sampled == 1 then sampled = true elseif ti.sampled == 0 then sampled = false end
    return setmetatable({
        trace_id = u64(ti.trace_id),
        parent_id = ti.parent_id ~= 0 and u64(ti.parent_id) or nil,
        span_id = u64(ti.span_id),
        sampled = sampled,
        flags = ti.flags ~= 0 and tonumber(ti.flags) or nil,
    }, TraceInfo)
end

--- IDs for a new root span: random trace ID, span ID = trace ID, no parent.
function TraceInfo.new()
    local ti = ffi.new("bp_trace_info_t")
    C.bp_trace_info_new(ti)
    return trace_info_of(ti)
end

local function opt_string(v)
    if v == nil then return nil end
    return tostring(v)
end

--- From upstream values (strings or numbers; sampled may be a boolean).
--- Raises "invalid sampled value", "invalid flags value"… on bad input.
function TraceInfo.from_upstream(trace_id, parent_id, span_id, sampled, flags)
    if sampled ~= nil and type(sampled) ~= "boolean" then
        error("invalid sampled value", 2)
    end
    if flags ~= nil and (type(flags) ~= "number" or flags < 0 or flags >= 2 ^ 64 or flags % 1 ~= 0) then
        error("invalid flags value", 2)
    end
    local ti = ffi.new("bp_trace_info_t")
    local rc = C.bp_trace_info_from_upstream(ti, opt_string(trace_id), opt_string(parent_id),
        opt_string(span_id), sampled == nil and nil or (sampled and "1" or "0"),
        flags and string.format("%.0f", flags) or nil, core.errbuf, core.errbuf_size)
    if rc ~= core.OK then error(core.errmsg(), 2) end
    return trace_info_of(ti)
end

-- The C struct for a TraceInfo table (or nil).
function M.trace_info_c(t)
    if t == nil then return nil end
    local ti = ffi.new("bp_trace_info_t")
    local rc = C.bp_trace_info_from_upstream(ti, t.trace_id, t.parent_id, t.span_id,
        t.sampled == nil and nil or (t.sampled and "1" or "0"),
        t.flags and string.format("%.0f", t.flags) or nil, core.errbuf, core.errbuf_size)
    if rc ~= core.OK then error(core.errmsg(), 3) end
    if t.sampled == nil then ti.sampled = -1 end
    return ti
end

--------------------------------------------------------------------------------
-- Spans

local Span = {}
M.Span = Span

local getters = {}
function getters.trace_id(self) return ffi_string(C.bp_span_trace_id_string(self.c)) end
function getters.id(self) return u64(C.bp_span_trace(self.c).span_id) end
getters.span_id = getters.id
function getters.parent_id(self)
    local p = C.bp_span_trace(self.c).parent_id
    return p ~= 0 and u64(p) or nil
end
function getters.sampled(self)
    local s = C.bp_span_trace(self.c).sampled
    if s < 0 then return nil end
    return s == 1
end
function getters.flags(self)
    local f = C.bp_span_trace(self.c).flags
    return f ~= 0 and tonumber(f) or nil
end
function getters.name(self) return ffi_string(C.bp_span_name(self.c)) end
function getters.component_name(self)
    local p = C.bp_span_component(self.c)
    return p ~= nil and ffi_string(p) or nil
end
function getters.kind(self)
    local k = C.bp_span_kind(self.c)
    return k == SERVER and "server" or (k == CLIENT and "client" or "local")
end
function getters.trace_info(self) return trace_info_of(C.bp_span_trace(self.c)) end
function getters.edge_request(self)
    local n = ffi.new("size_t[1]")
    local p = C.bp_span_edge_request(self.c, n)
    return p ~= nil and ffi_string(p, n[0]) or nil
end
function getters.tracestate(self)
    local p = C.bp_span_tracestate(self.c)
    return p ~= nil and ffi_string(p) or nil
end

Span.__index = function(self, k)
    local g = getters[k]
    if g then return g(self) end
    return Span[k]
end
-- The methods and fields (the shell's Tab completion asks).
Span.__dir = function()
    local names = {}
    for k in pairs(Span) do if type(k) == "string" and k:sub(1, 2) ~= "__" then names[#names + 1] = k end end
    for k in pairs(getters) do names[#names + 1] = k end
    return names
end
Span.__tostring = function(self)
    return "Span(" .. self.name .. ", trace " .. self.trace_id .. ")"
end

--- Wrap a C span (taking a reference of our own).
function M.wrap(c, context)
    C.bp_span_ref(c)
    return setmetatable({ c = ffi_gc(c, C.bp_span_unref), context = context }, Span)
end

--------------------------------------------------------------------------------
-- Lua observers: the events src/observer_lua.c queued, delivered in order

-- BP_OBSERVE_* (tests/lua/test-ffi-decls.lua checks these mirrors)
local EV_CREATED, EV_START, EV_SET_TAG, EV_INCR_TAG, EV_LOG, EV_FINISH, EV_CHILD, EV_RELEASED =
    1, 2, 3, 4, 5, 6, 7, 8
M.EV_CREATED, M.EV_START, M.EV_SET_TAG, M.EV_INCR_TAG, M.EV_LOG, M.EV_FINISH, M.EV_CHILD, M.EV_RELEASED =
    EV_CREATED, EV_START, EV_SET_TAG, EV_INCR_TAG, EV_LOG, EV_FINISH, EV_CHILD, EV_RELEASED

local pending = require("baseplate.runtime").observe_pending -- the queue's length
local uintptr_t = ffi.typeof("uintptr_t")
local tonumber, ffi_cast = tonumber, ffi.cast

-- What Lua keeps per watched span, by the span's address; forgotten when
-- the core frees the span (EV_RELEASED, queued before the address can be
-- used again).
local span_obs = {} -- the span's Lua observers
-- the Span object events about it are given to (weak: an object holds a
-- reference to its C span, which would otherwise never be freed)
local span_obj = setmetatable({}, { __mode = "v" })
local errors = {}   -- the Lua error it is finishing with (the core only knows its class)
local contexts = {} -- the context object a job made for its server span
local baseplates = setmetatable({}, { __mode = "v" }) -- Baseplate tables by C address

local function addr_of(c) return tonumber(ffi_cast(uintptr_t, c)) end
M.addr_of = addr_of

local function call_each(obs, name, a, b)
    for i = 1, #obs do
        local o = obs[i]
        local fn = o[name]
        if fn then
            local ok, err = pcall(fn, o, a, b)
            if not ok then
                logger():error("observer %s.%s failed: %s", tostring(o), name, tostring(err))
            end
        end
    end
end

-- A failure the core decided (a 5xx of a C route, a Lua handler's error
-- class when its error value is gone): the class is all there is.
local CoreError = {}
CoreError.__index = CoreError
CoreError.__tostring = function(self) return self.class end
M.CoreError = CoreError

local function tag_value(p, t)
    local v = ffi_string(p)
    if t == TAG_NUMBER then return tonumber(v) or v end
    if t == TAG_BOOL then return v == "True" end
    return v
end

-- The Span object for C span c at addr (one per span while it is watched).
local function obj_for(c, addr, context)
    local o = span_obj[addr]
    if not o then
        C.bp_span_ref(c)
        o = setmetatable({ c = ffi_gc(c, C.bp_span_unref), context = context }, Span)
        span_obj[addr] = o
    end
    return o
end

local created_hook -- baseplate.lua's: function(bp, span, context) -> span

local function deliver(ev)
    local t = ev.type
    local addr = tonumber(ev.addr)
    if t == EV_CREATED then
        local bp = baseplates[addr_of(C.bp_span_baseplate(ev.span))]
        if bp and created_hook then
            local context = contexts[addr]
            contexts[addr] = nil
            local span = context and context.span or span_obj[addr] -- (a request's getter makes it)
            if span then span_obj[addr] = span else span = obj_for(ev.span, addr, context) end
            created_hook(bp, span, context)
        end
    elseif t == EV_RELEASED then
        span_obs[addr], span_obj[addr], errors[addr], contexts[addr] = nil, nil, nil, nil
    else
        local obs = span_obs[addr]
        if not obs then
            if t == EV_FINISH then errors[addr] = nil end
            return
        end
        if t == EV_START then
            call_each(obs, "on_start")
        elseif t == EV_SET_TAG then
            call_each(obs, "on_set_tag", ffi_string(ev.a), tag_value(ev.b, ev.tag_type))
        elseif t == EV_INCR_TAG then
            call_each(obs, "on_incr_tag", ffi_string(ev.a), ev.delta)
        elseif t == EV_LOG then
            call_each(obs, "on_log", ffi_string(ev.a), ev.b ~= nil and ffi_string(ev.b) or nil)
        elseif t == EV_FINISH then
            local err = errors[addr]
            errors[addr] = nil
            if err == nil and ev.a ~= nil then
                local class = ffi_string(ev.a)
                err = setmetatable({ class = class, message = class }, CoreError)
            end
            call_each(obs, "on_finish", err)
        elseif t == EV_CHILD then
            local parent = span_obj[addr]
            local child = obj_for(ev.child, addr_of(ev.child), parent and parent.context)
            call_each(obs, "on_child_span_created", child)
        end
    end
end

local n_cell = ffi.new("int[1]")
local draining = false

--- Deliver what is queued to the Lua observers, oldest first. (An event an
--- observer causes is delivered after the one it is handling.)
local function drain()
    if draining then return end
    draining = true
    while pending[0] > 0 do
        local evs = C.bp_observer_events_take(n_cell)
        if n_cell[0] == 0 then break end -- (out of memory: kept for the next turn)
        for i = 0, n_cell[0] - 1 do
            local ok, err = pcall(deliver, evs[i])
            if not ok then logger():error("delivering a span event failed: %s", tostring(err)) end
        end
    end
    draining = false
end
M.drain = drain

-- How many spans Lua keeps observer state for (tests: none once freed).
function M._watched_count()
    local n = 0
    for _ in pairs(span_obs) do n = n + 1 end
    for _ in pairs(errors) do n = n + 1 end
    for _ in pairs(contexts) do n = n + 1 end
    return n
end

--- Whether events wait for the Lua observers.
function M.pending() return pending[0] > 0 end

--- The Lua error (with its traceback) span c is about to be failed with by
--- the core, for its observers' on_finish (the core only carries the class).
function M.note_error(c, err)
    local addr = addr_of(c)
    if span_obs[addr] then errors[addr] = err end
end

--- A job made `context` for server span c: its Baseplate's observers get it.
function M.adopt(c, context)
    if pending[0] > 0 then
        contexts[addr_of(c)] = context
        drain()
    end
end

--- Forward the spans of Baseplate `bp` (a table with the C object at bp.c)
--- to the Lua observers; `hook(bp, span, context)` hears of each server span.
function M.forward(bp, hook)
    local rc = C.bp_baseplate_forward_to_lua(bp.c)
    if rc ~= core.OK then error("register: " .. core.strerror(rc), 3) end
    baseplates[addr_of(bp.c)] = bp
    created_hook = hook
end

--- The error class a span finishes with: nil, a table's `class` or `name`
--- field, else "Error".
local function error_class(err)
    if err == nil or err == false then return nil end
    if type(err) == "table" then
        local c = rawget(err, "class") or rawget(err, "name")
        if type(c) == "string" then return c end
    end
    return "Error"
end
M.error_class = error_class

--- Watch this span's events with `observer` (a table with any of on_start,
--- on_set_tag, on_incr_tag, on_log, on_finish, on_child_span_created).
function Span:register(observer)
    if type(observer) ~= "table" then error("register: expected an observer table", 2) end
    local c = self.c
    local addr = addr_of(c)
    local obs = span_obs[addr]
    if not obs then
        local rc = C.bp_span_forward_to_lua(c)
        if rc ~= core.OK and rc ~= core.DECLINED then error("register: " .. core.strerror(rc), 2) end
        obs = {}
        span_obs[addr] = obs
        if not span_obj[addr] then span_obj[addr] = self end
    end
    obs[#obs + 1] = observer
end

function Span:start()
    C.bp_span_start(self.c)
    if pending[0] > 0 then drain() end
    return self
end

local function tag_string(value)
    local t = type(value)
    if t == "boolean" then return value and "True" or "False", TAG_BOOL end
    if t == "number" then
        if value % 1 == 0 and value > -1e15 and value < 1e15 then
            return string.format("%d", value), TAG_NUMBER
        end
        return string.format("%.17g", value), TAG_NUMBER
    end
    return tostring(value), TAG_STRING
end

function Span:set_tag(key, value)
    local s, t = tag_string(value)
    C.bp_span_set_tag(self.c, tostring(key), s, t)
    if pending[0] > 0 then drain() end
end

function Span:incr_tag(key, delta)
    delta = delta or 1
    if type(delta) ~= "number" then error("incr_tag: delta must be a number", 2) end
    C.bp_span_incr_tag(self.c, tostring(key), delta)
    if pending[0] > 0 then drain() end
end

function Span:log(name, payload)
    C.bp_span_log(self.c, tostring(name), payload ~= nil and tostring(payload) or nil)
    if pending[0] > 0 then drain() end
end

--- Finish the span; `err` (any Lua error value) marks a failure.
function Span:finish(err)
    local c = self.c
    if err ~= nil and err ~= false then M.note_error(c, err) end
    if C.bp_span_finish(c, error_class(err)) ~= core.OK then return end
    if pending[0] > 0 then drain() end
end

local status_buf = ffi.new("int[1]")

--- Prometheus (docs/prometheus.md): count this client span in its
--- library's family ("redis_client", "http_client", ...) with `labels`
--- (from span.metric_labels) and `counter_labels` on the requests counter
--- only; `success` (true or false) the family's success label when it is
--- not the span's outcome. Clients call it when span.prometheus_on() says
--- it is recorded.
function Span:set_metric_family(family, labels, counter_labels, success)
    local rc = C.bp_span_set_metric_family(self.c, tostring(family), labels or "", counter_labels,
        success == nil and -1 or (success and 1 or 0))
    if rc ~= core.OK then
        error("set_metric_family: " .. (rc == core.EINVAL
            and "a client span, a metric name and labels as span.metric_labels writes them expected"
            or core.strerror(rc)), 2)
    end
end

local function label_value(v)
    v = tostring(v)
    if v:find('[\\"\n]') then
        v = v:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n")
    end
    return v
end

--- Labels in the Prometheus text format: metric_labels("a", 1, "b", "x")
--- is 'a="1",b="x"' (values escaped; nil is "").
function M.metric_labels(...)
    local parts = {}
    for i = 1, select("#", ...), 2 do
        local k, v = select(i, ...)
        parts[#parts + 1] = k .. '="' .. (v == nil and "" or label_value(v)) .. '"'
    end
    return table.concat(parts, ",")
end

--- A client's memo of metric_labels: labels(key, name, value, ...) makes
--- them once per key (a client, command, ... joined), at most 4096 kept (a
--- service that makes names up starts over).
function M.label_memo()
    local memo, n = {}, 0
    return function(key, ...)
        local l = memo[key]
        if not l then
            if n >= 4096 then memo, n = {}, 0 end
            l = M.metric_labels(...)
            memo[key], n = l, n + 1
        end
        return l
    end
end

--- Whether this process records Prometheus metrics (metrics.prometheus.bind).
function M.prometheus_on() return C.bp_prom_slot() ~= 0 end

--- A child span: a client span (an outbound call named "client.method"),
--- or with `is_local` a local span of `component_name`.
function Span:make_child(name, is_local, component_name)
    local c = C.bp_span_make_child(self.c, tostring(name), is_local and 1 or 0,
        component_name and tostring(component_name) or nil, status_buf)
    if c == nil then
        if status_buf[0] == core.EINVAL then
            error("Cannot make child span of parent that already finished", 2)
        end
        error("make_child: " .. core.strerror(status_buf[0]), 2)
    end
    local child = setmetatable({ c = ffi_gc(c, C.bp_span_unref), context = self.context }, Span)
    if pending[0] > 0 then
        -- (the parent is watched: observers get the caller's object)
        if span_obj[addr_of(self.c)] then span_obj[addr_of(c)] = child end
        drain()
    end
    return child
end

-- Tables pass through (their class names the failure); strings get a traceback.
local function keep_error(err)
    if type(err) == "table" then return err end
    return debug.traceback(tostring(err), 2)
end

--- Run fn(span, ...) as the span's scope: start it, finish it when fn
--- returns or raises (with the error), and pass fn's results or error on.
function Span:with(fn, ...)
    self:start()
    local res = { xpcall(fn, keep_error, self, ...) }
    if res[1] then
        self:finish()
        return unpack(res, 2, table.maxn(res))
    end
    self:finish(res[2])
    error(res[2], 0)
end

M.SERVER, M.CLIENT, M.LOCAL = SERVER, CLIENT, LOCAL
M.Span = Span
-- span.h's BP_TAG_* (tests/lua/test-ffi-decls.lua checks these mirrors)
M.TAG_STRING, M.TAG_NUMBER, M.TAG_BOOL = TAG_STRING, TAG_NUMBER, TAG_BOOL
M.C = C

return M
