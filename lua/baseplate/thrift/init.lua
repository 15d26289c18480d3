-- Thrift services in Lua: a processor binds a service of an IDL to a table
-- of handler functions; baseplate.server.thrift serves it (docs/thrift.md).
--
--   local thrift = require("baseplate.thrift")
--   local schema = thrift.load("users.thrift")
--   local NotFound = schema:struct("NotFound")
--   local handler = {}
--   function handler.get_user(context, id)
--       if id ~= 1 then error(NotFound:new({ id = id })) end
--       return { id = id, name = "a" }
--   end
--   return thrift.processor(schema:service("Users"), handler, { baseplate = bp })
--
-- Each call runs in a coroutine of its own: the handler receives the call's
-- context (span, headers, deadline, the Baseplate's context attributes) and
-- the arguments in their declared order, and returns the result. A declared
-- exception raised with error(Exc:new{…}) goes back as itself; any other
-- error is logged with its traceback and answered with a
-- TApplicationException (INTERNAL_ERROR).
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local codec = require("baseplate.thrift.codec")
local idl = require("baseplate.thrift.idl")
local log = require("baseplate.log")

ffi.cdef([[
typedef struct bp_thrift_call_s bp_thrift_call_t;
typedef struct bp_span_s bp_span_t;
const char *bp_thrift_call_method(const bp_thrift_call_t *call, size_t *len);
int bp_thrift_call_type(const bp_thrift_call_t *call);
int32_t bp_thrift_call_seqid(const bp_thrift_call_t *call);
int bp_thrift_call_protocol(const bp_thrift_call_t *call);
int bp_thrift_call_transport(const bp_thrift_call_t *call);
const char *bp_thrift_call_message(const bp_thrift_call_t *call, size_t *len, size_t *body_off);
const char *bp_thrift_call_header(const bp_thrift_call_t *call, const char *name, size_t *len);
int bp_thrift_call_header_count(const bp_thrift_call_t *call);
void bp_thrift_call_header_at(const bp_thrift_call_t *call, int i, const char **name,
                              size_t *name_len, const char **value, size_t *value_len);
const char *bp_thrift_call_remote_addr(const bp_thrift_call_t *call);
bp_span_t *bp_thrift_call_span(const bp_thrift_call_t *call);
void bp_thrift_call_set_error(bp_thrift_call_t *call, const char *error_class);
void bp_thrift_call_set_error_code(bp_thrift_call_t *call, int code);
int bp_thrift_call_reply(bp_thrift_call_t *call, const char *msg, size_t len);
int bp_thrift_call_fail(bp_thrift_call_t *call, int type, const char *message);
int bp_thrift_call_finish(bp_thrift_call_t *call);
int bp_thrift_call_answered(const bp_thrift_call_t *call);
typedef int (*bp_thrift_method_fn)(bp_thrift_call_t *call, void *data);
]])

local C = core.C
local ffi_string, ffi_cast = ffi.string, ffi.cast
local format = string.format
local traceback = debug.traceback

local server_log = log.get_logger("baseplate.server.thrift")

local M = {}

--- Read an IDL (baseplate.thrift.idl's load): the schema of its structs,
--- enums, constants and services.
M.load = idl.load

M.app_error = codec.app_error

local call_ptr_t = ffi.typeof("bp_thrift_call_t *")
local len_cell = ffi.new("size_t[1]")
local len2_cell = ffi.new("size_t[1]")
local str_cell = ffi.new("const char *[1]")
local str2_cell = ffi.new("const char *[1]")
local PROTOCOLS = { [0] = "binary", [1] = "compact" }
local TRANSPORTS = { [0] = "unframed", [1] = "framed", [2] = "header" }
local ONEWAY = codec.ONEWAY

----------------------------------------------------------------------------
-- TApplicationException

local AppError = {}
AppError.__index = AppError
AppError.__tostring = function(e) return "TApplicationException: " .. tostring(e.message) end

--- An error value that goes back to the caller as a TApplicationException
--- of `type` (M.app_error) with `message`: error(thrift.ApplicationException(…)).
function M.ApplicationException(type_, message)
    return setmetatable({ type = type_ or codec.app_error.UNKNOWN, message = message or "",
                          class = "TApplicationException" }, AppError)
end
M.AppError = AppError

local function fail(call, type_, message)
    local rc = C.bp_thrift_call_fail(call, type_, message)
    return rc
end

----------------------------------------------------------------------------
-- Methods written in C

local CMethod = {}
CMethod.__index = CMethod
local method_fn_t = ffi.typeof("bp_thrift_method_fn")

ffi.cdef([[
void *dlopen(const char *filename, int flags);
void *dlsym(void *handle, const char *symbol);
char *dlerror(void);
]])
local RTLD_NOW = 2
local libs = {} -- path -> handle (never closed: their functions stay in use)

-- `module` as a path: itself when it has a '/', else found on package.cpath
-- as a Lua C module would be.
local function module_path(module)
    if module:find("/", 1, true) then return module end
    local path, err = package.searchpath(module, package.cpath)
    if not path then error("c_method: no C module " .. module .. ":" .. err, 3) end
    return path
end

--- A method written in C, for a handler table:
---   thrift.c_method("mymodule", "add_c"[, data])   -- mymodule.so on package.cpath (or a path)
---   thrift.c_method(fn[, data])                    -- a function pointer cdata
--- The function is `int fn(bp_thrift_call_t *call, void *data)`: it decodes
--- the arguments itself and answers the call (include/baseplate/thrift.h).
function M.c_method(fn, symbol, data)
    if type(fn) == "string" then
        if type(symbol) ~= "string" then error("c_method: expected a symbol name after the module", 2) end
        local path = module_path(fn)
        local lib = libs[path]
        if not lib then
            lib = C.dlopen(path, RTLD_NOW)
            if lib == nil then error("c_method: cannot load " .. path .. ": " .. ffi_string(C.dlerror()), 2) end
            libs[path] = lib
        end
        local sym = C.dlsym(lib, symbol)
        if sym == nil then error("c_method: " .. path .. " has no function '" .. symbol .. "'", 2) end
        fn = sym
    else
        data = symbol
    end
    local ok, f = pcall(ffi_cast, method_fn_t, fn)
    if fn == nil or not ok then error("c_method: expected a C function, got " .. tostring(fn), 2) end
    return setmetatable({ fn = f, data = data and ffi_cast("void *", data) or nil }, CMethod)
end

local function run_c_method(call, name, entry)
    local rc = entry.fn.fn(call, entry.fn.data)
    if rc ~= core.OK and rc ~= core.AGAIN and C.bp_thrift_call_answered(call) == 0 then
        server_log:error("C method %s failed: %s", name, core.strerror(rc))
        C.bp_thrift_call_set_error(call, "InternalError")
        return fail(call, codec.app_error.INTERNAL_ERROR, "Internal error")
    end
    if rc == core.OK and C.bp_thrift_call_answered(call) == 0 then
        if C.bp_thrift_call_type(call) == ONEWAY then
            rc = C.bp_thrift_call_finish(call)
            return rc
        end
        server_log:error("C method %s returned without answering", name)
        C.bp_thrift_call_set_error(call, "InternalError")
        return fail(call, codec.app_error.INTERNAL_ERROR, "Internal error")
    end
    return rc
end

----------------------------------------------------------------------------
-- The health check every Thrift service answers (formats.md): is_healthy,
-- as BaseplateServiceV2 (1: IsHealthyRequest request) and as the older
-- BaseplateService (no arguments) declare it. The two share a name and a
-- result, and the older's empty arguments decode as V2's without a request.

local health = {}
do
    local b = codec.base_type
    local request = { name = "baseplate.IsHealthyRequest", kind = "struct", fields = {
        { id = 1, name = "probe", required = "optional", type = b("i32") },
    } }
    local args = { name = "BaseplateServiceV2_is_healthy_args", kind = "struct", fields = {
        { id = 1, name = "request", required = "default", type = { kind = "struct", struct = request } },
    } }
    local result = { name = "BaseplateServiceV2_is_healthy_result", kind = "struct", fields = {
        { id = 0, name = "success", required = "optional", type = b("bool") },
    } }
    local h = codec.compile({ request, args, result })
    health.method = { name = "is_healthy", oneway = false, args = h[args], result = h[result],
                      exceptions = {}, builtin = true }
end
local PROBE_NAMES = { [1] = "readiness", [2] = "liveness", [3] = "startup" }

----------------------------------------------------------------------------
-- Processors

local Processor = {}
Processor.__index = Processor
M.Processor = Processor

local processors = {} -- id -> Processor (the C server knows its processor by id)

-- The short name of an exception's struct ("users.NotFound" -> "NotFound").
local function short_name(name)
    return name:match("([^.]+)$") or name
end
M.short_name = short_name

--- An exception's baseplate.thrift error code, as Baseplate.py reads it: the
--- numeric `code` field of a struct value (an `Error`), an i32; else nil.
function M.error_code(value)
    local code = codec.struct_of(value) and tonumber(rawget(value, "code"))
    if code and code == code and code >= -2147483648 and code <= 2147483647 then return code end
    return nil
end

--- A processor for `service` (schema:service(name)) whose methods are
--- `handler`'s functions of the same names (handler.method(context, ...)).
--- opts.baseplate: a Baseplate whose server span each call gets (metrics,
--- tracing, context attributes); opts.trust_trace_headers: take the
--- caller's trace from the THeader headers (default: the app config's
--- baseplate.trust_trace_headers, else false); opts.app_config.
function M.processor(service, handler, opts)
    opts = opts or {}
    if type(service) ~= "table" or type(service.methods) ~= "table" then
        error("processor: expected a service (schema:service(name))", 2)
    end
    if type(handler) ~= "table" then error("processor: expected a table of handler functions", 2) end
    local methods, missing = {}, {}
    for name, m in pairs(service.methods) do
        local fn = handler[name]
        if fn == nil and name == "is_healthy" then
            fn = false -- the built-in health check, with the service's own codec
        elseif type(fn) ~= "function" and getmetatable(fn) ~= CMethod then
            missing[#missing + 1] = name
        end
        local exc = {}
        for _, f in ipairs(m.exceptions or {}) do
            local st = f.type and f.type.struct
            if st and st.name then exc[st.name] = f.name end
        end
        methods[name] = { m = m, fn = fn, exceptions = exc, c = getmetatable(fn) == CMethod }
    end
    if #missing > 0 then
        table.sort(missing)
        error("processor for " .. tostring(service.name) .. ": no handler function for "
            .. table.concat(missing, ", "), 2)
    end
    if not methods.is_healthy then methods.is_healthy = { m = health.method, fn = false, exceptions = {} } end
    local trust = opts.trust_trace_headers
    if trust == nil and opts.app_config then
        local config = require("baseplate.lib.config")
        local cfg = config.parse_config(opts.app_config, {
            baseplate = { trust_trace_headers = config.Optional(config.Boolean, false) },
        })
        trust = cfg.baseplate.trust_trace_headers
    end
    local self = setmetatable({
        service = service, handler = handler, methods = methods, baseplate = opts.baseplate,
        trust_trace_headers = trust and true or false, config = opts.app_config,
    }, Processor)
    if opts.baseplate ~= nil and (type(opts.baseplate) ~= "table" or opts.baseplate.c == nil) then
        error("processor: opts.baseplate must be a Baseplate", 2)
    end
    self.id = #processors + 1
    processors[self.id] = self
    return self
end

--- Supply the health check is_healthy runs (unless the handler has its
--- own is_healthy): fn(probe) with probe "readiness", "liveness" or
--- "startup"; a true result is healthy. The server fails readiness by
--- itself once it is shutting down.
function Processor:health_check(fn)
    if type(fn) ~= "function" then error("health_check: expected a function", 2) end
    self.is_healthy = fn
    return self
end

local function builtin_health(processor, request)
    local probe = PROBE_NAMES[request and request.probe or 1] or "readiness"
    if probe == "readiness" and require("baseplate.server").SERVER_STATE.shutting_down then
        return false
    end
    if processor.is_healthy then
        local ok, healthy = pcall(processor.is_healthy, probe)
        return ok and healthy and true or false
    end
    return true
end

----------------------------------------------------------------------------
-- A call's context

local span_module
local function span_mod()
    if not span_module then span_module = require("baseplate.span") end
    return span_module
end

local getters = {}

function getters.span(self)
    local c = C.bp_thrift_call_span(self._call)
    if c == nil then return nil end
    return span_mod().wrap(c, self)
end

function getters.method(self) return ffi_string(C.bp_thrift_call_method(self._call, nil)) end

function getters.headers(self)
    local call = self._call
    local h = {}
    for i = 0, C.bp_thrift_call_header_count(call) - 1 do
        C.bp_thrift_call_header_at(call, i, str_cell, len_cell, str2_cell, len2_cell)
        h[ffi_string(str_cell[0], len_cell[0])] = ffi_string(str2_cell[0], len2_cell[0])
    end
    return h
end

function getters.remote_addr(self) return ffi_string(C.bp_thrift_call_remote_addr(self._call)) end

function getters.protocol(self) return PROTOCOLS[C.bp_thrift_call_protocol(self._call)] end

function getters.transport(self) return TRANSPORTS[C.bp_thrift_call_transport(self._call)] end

--- The caller's Deadline-Budget header, in seconds (nil without one).
function getters.deadline_budget(self)
    local p = C.bp_thrift_call_header(self._call, "Deadline-Budget", len_cell)
    if p == nil then return nil end
    local ms = tonumber(ffi_string(p, len_cell[0]))
    if not ms or ms < 0 then return nil end
    return ms / 1000
end

local Context = {}

--- The THeader header `name` (any case), or nil.
function Context:header(name)
    local p = C.bp_thrift_call_header(self._call, name, len_cell)
    if p == nil then return nil end
    return ffi_string(p, len_cell[0])
end

--- The edge context the caller passed (Edge-Request): its raw bytes, and
--- the Baseplate's edge context factory's object of them (parsed on first
--- access; the raw bytes without a factory).
function getters.raw_edge_context(self) return Context.header(self, "Edge-Request") end
function getters.edge_context(self)
    local bp = rawget(self, "_bp")
    local raw = self.raw_edge_context
    if bp == nil then return raw end
    return bp:edge_context_of(raw)
end

--- Seconds left of the caller's deadline (nil without a Deadline-Budget).
function Context:time_remaining()
    local budget = self.deadline_budget
    if not budget then return nil end
    local left = budget - (runtime.now() - rawget(self, "_start"))
    return left > 0 and left or 0
end

local context_mt = {
    __index = require("baseplate.baseplate").context_index(getters, Context),
    __tostring = function(self)
        return "thrift call " .. tostring(self.method)
    end,
    -- The call's job died outside the handler's protection (a bug of
    -- ours): the caller gets an INTERNAL_ERROR rather than no answer.
    __job_died = function(self)
        if not rawget(self, "_done") then
            rawset(self, "_done", true)
            C.bp_thrift_call_set_error(self._call, "InternalError")
            C.bp_thrift_call_fail(self._call, codec.app_error.INTERNAL_ERROR, "Internal error")
        end
    end,
}
M.Context = Context

----------------------------------------------------------------------------
-- Serving a call (runtime.set_job: the worker coroutine's job)

local function error_handler(err)
    if codec.struct_of(err) or getmetatable(err) == AppError then return err end
    return traceback(tostring(err), 2)
end

-- A method's arguments by position, both ways, through functions made once
-- per method from its argument names (no loop and no list per call: the JIT
-- compiles them; a loop's exit on the client's call path made it abort).
local function per_method(cache, m, source, ...)
    local f = cache[m]
    if f then return f end
    local names = {}
    for i, field in ipairs(m.args.fields) do names[i] = field.name end
    f = assert(loadstring(source(names)))(...)
    cache[m] = f
    return f
end

-- The server's call of a handler: function(fn, context, args) return
-- xpcall(fn, error_handler, context, args.a, args.b…) end.
local callers = setmetatable({}, { __mode = "k" })
local function caller_source(names)
    local list = {}
    for i, n in ipairs(names) do list[i] = format(", args[%q]", n) end
    return "local xpcall, eh = ... return function(fn, context, args) return xpcall(fn, eh, context"
        .. table.concat(list) .. ") end"
end
local function caller(m)
    local f = per_method(callers, m, caller_source, xpcall, error_handler)
    return f
end

-- A client's arguments table: function(a1, a2…) return { a = a1, b = a2… } end.
local packers = setmetatable({}, { __mode = "k" })
local function packer_source(names)
    local params, sets = {}, {}
    for i, n in ipairs(names) do
        params[i] = "a" .. i
        sets[i] = format("[%q] = a%d", n, i)
    end
    return format("return function(%s) return { %s } end", table.concat(params, ", "), table.concat(sets, ", "))
end

--- The function that makes method `m`'s arguments table from its positional
--- arguments (the Thrift client's calls).
function M.pack_args(m)
    local f = per_method(packers, m, packer_source)
    return f
end

local function reply(call, name, seqid, result, value, protocol)
    local ok, msg = pcall(codec.encode_message, name, codec.REPLY, seqid, result, value, protocol)
    if not ok then
        local err = tostring(msg)
        server_log:error("cannot encode the result of %s: %s", name, err)
        C.bp_thrift_call_set_error(call, "TProtocolException")
        return fail(call, codec.app_error.INTERNAL_ERROR, "Internal error")
    end
    local rc = C.bp_thrift_call_reply(call, msg, #msg)
    return rc
end

local serving = runtime.serving
local observe_pending = runtime.observe_pending

local function call_job(callp, processor_id)
    local call = ffi_cast(call_ptr_t, callp) -- callp: the call's address, a number
    local processor = processors[processor_id]
    local name = ffi_string(C.bp_thrift_call_method(call, nil))
    local entry = processor.methods[name]
    if not entry then
        C.bp_thrift_call_set_error(call, "TApplicationException")
        return fail(call, codec.app_error.UNKNOWN_METHOD, "Unknown function " .. name)
    end
    if entry.c then return run_c_method(call, name, entry) end
    local m = entry.m
    local protocol = PROTOCOLS[C.bp_thrift_call_protocol(call)]
    local seqid = C.bp_thrift_call_seqid(call)
    local oneway = C.bp_thrift_call_type(call) == ONEWAY
    local p = C.bp_thrift_call_message(call, len_cell, len2_cell)
    local args, derr = m.args:decode(ffi_string(p, len_cell[0]), protocol, tonumber(len2_cell[0]) + 1)
    if not args then
        server_log:warning("bad arguments to %s from %s: %s", name,
            ffi_string(C.bp_thrift_call_remote_addr(call)), tostring(derr))
        C.bp_thrift_call_set_error(call, "TProtocolException")
        return fail(call, codec.app_error.PROTOCOL_ERROR, tostring(derr))
    end

    local bp = processor.baseplate
    local context = setmetatable({ _call = call, _bp = bp, _start = runtime.now() }, context_mt)
    -- (the core made the call's span: its Lua observers hear of it now,
    -- with this context)
    if observe_pending[0] > 0 and C.bp_thrift_call_span(call) ~= nil then
        span_mod().adopt(C.bp_thrift_call_span(call), context)
    end
    serving(context)

    local ok, res
    if entry.fn then
        ok, res = caller(m)(entry.fn, context, args)
    else
        ok, res = true, builtin_health(processor, args.request)
    end

    local rc
    rawset(context, "_done", true) -- (the answer below is the last thing that can fail)
    local timed_out = rawget(context, "_timed_out")
    if not ok and not timed_out and C.bp_thrift_call_span(call) ~= nil then
        -- (before the answer finishes the span: its observers get the error)
        span_mod().note_error(C.bp_thrift_call_span(call), res)
    end
    if timed_out then -- (a server timeout: whatever the handler did)
        C.bp_thrift_call_set_error(call, "ServerTimeout")
        if C.bp_thrift_call_span(call) ~= nil then
            span_mod().note_error(C.bp_thrift_call_span(call), require("baseplate.server_timeout").error_of(timed_out))
        end
        if oneway then
            rc = C.bp_thrift_call_finish(call)
        else
            rc = fail(call, codec.app_error.INTERNAL_ERROR, timed_out.message)
        end
    elseif oneway then
        if not ok then
            server_log:exception("unhandled error in oneway method " .. name .. ": "
                .. tostring(res):match("^[^\n]*"), { traceback = tostring(res) })
            C.bp_thrift_call_set_error(call, span_mod().error_class(res))
        end
        rc = C.bp_thrift_call_finish(call)
    elseif ok then
        rc = reply(call, name, seqid, m.result, { success = res }, protocol)
    else
        local st = codec.struct_of(res)
        -- (its code, if it has one, labels the call's metrics)
        local code = M.error_code(res)
        if code then C.bp_thrift_call_set_error_code(call, code) end
        local field = st and entry.exceptions[st.name]
        if field then
            C.bp_thrift_call_set_error(call, short_name(st.name))
            rc = reply(call, name, seqid, m.result, { [field] = res }, protocol)
        elseif getmetatable(res) == AppError then
            C.bp_thrift_call_set_error(call, "TApplicationException")
            rc = fail(call, tonumber(res.type) or 0, tostring(res.message))
        else
            local text = st and ("undeclared exception " .. tostring(res)) or tostring(res)
            server_log:exception("unhandled error in method " .. name .. ": " .. text:match("^[^\n]*"),
                { traceback = text })
            C.bp_thrift_call_set_error(call, st and short_name(st.name) or span_mod().error_class(res))
            rc = fail(call, codec.app_error.INTERNAL_ERROR, "Internal error")
        end
    end
    if observe_pending[0] > 0 then span_mod().drain() end
    return rc
end

runtime.set_job(runtime.PROTOCOL_THRIFT, call_job)

return M
