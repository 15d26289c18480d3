-- Spans and trace context: the Lua face of include/baseplate/span.h.
--
--   local span = request.span:make_child("geocode", true, "maps")
--   span:with(function(s) ... end)      -- start; finish, with the error if fn fails
--
-- A Span wraps a C span. The C observers (metrics, logging) see every event
-- in the core; Lua observers registered with span:register(observer) are
-- called after them, each under its own pcall, so that one failing observer
-- neither stops the others nor leaks the span.
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
} bp_trace_info_t;
void bp_trace_info_new(bp_trace_info_t *ti);
int bp_trace_info_from_upstream(bp_trace_info_t *ti, const char *trace_id, const char *parent_id,
                                const char *span_id, const char *sampled, const char *flags,
                                char *err, size_t errlen);
uint64_t bp_random_id(void);
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
int bp_span_state(const bp_span_t *span);
const char *bp_span_trace_id_string(bp_span_t *span);
double bp_span_duration(const bp_span_t *span);
const char *bp_span_get_tag(const bp_span_t *span, const char *key, int *type);
int bp_span_set_edge_request(bp_span_t *span, const char *data, size_t len);
const char *bp_span_edge_request(const bp_span_t *span, size_t *len);
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

-- Call method `name` on each Lua observer, each under pcall.
local function notify(self, name, a, b)
    local obs = self._observers
    if not obs then return end
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
M.notify = notify

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

function Span:register(observer)
    if type(observer) ~= "table" then error("register: expected an observer table", 2) end
    local obs = self._observers
    if not obs then
        obs = {}
        self._observers = obs
    end
    obs[#obs + 1] = observer
end

function Span:start()
    C.bp_span_start(self.c)
    notify(self, "on_start")
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
    notify(self, "on_set_tag", key, value)
end

function Span:incr_tag(key, delta)
    delta = delta or 1
    if type(delta) ~= "number" then error("incr_tag: delta must be a number", 2) end
    C.bp_span_incr_tag(self.c, tostring(key), delta)
    notify(self, "on_incr_tag", key, delta)
end

function Span:log(name, payload)
    C.bp_span_log(self.c, tostring(name), payload ~= nil and tostring(payload) or nil)
    notify(self, "on_log", name, payload)
end

--- Finish the span; `err` (any Lua error value) marks a failure.
function Span:finish(err)
    if C.bp_span_finish(self.c, error_class(err)) ~= core.OK then return end
    notify(self, "on_finish", err)
end

local status_buf = ffi.new("int[1]")

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
    notify(self, "on_child_span_created", child)
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
-- span.h's BP_TAG_* (tests/lua/test-ffi-decls.lua checks these mirrors)
M.TAG_STRING, M.TAG_NUMBER, M.TAG_BOOL = TAG_STRING, TAG_NUMBER, TAG_BOOL
M.C = C

return M
