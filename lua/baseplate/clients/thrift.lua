-- Thrift clients: calls to other services over THeader, non-blocking,
-- pooled and traced (docs/thrift.md, "Calling Thrift services").
--
--   local thrift = require("baseplate.thrift")
--   local ThriftClient = require("baseplate.clients.thrift").ThriftClient
--   local schema = thrift.load("users.thrift")
--   bp:configure_context({ users = ThriftClient(schema:service("Users")) })
--   -- [app:main] users.endpoint = users.local:9090
--   local user = context.users:get_user(42)   -- arguments in declared order
--
-- Each call is a client span "{name}.{method}" of the caller's span; its
-- trace goes along in THeader headers. A declared exception is raised as the
-- value of its struct (Struct:new), a TApplicationException as
-- baseplate.thrift's ApplicationException, and transport failures as a
-- TransportException naming the client, method and endpoint. The messages
-- are encoded and decoded by the codec; src/clients/thrift.c frames them and
-- moves the bytes.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local Pool = require("baseplate.clients.pool")
local span_mod = require("baseplate.span")
local codec = require("baseplate.thrift.codec")
local thrift = require("baseplate.thrift")

ffi.cdef([[
const char *bp_prom_error_code_name(int code);
typedef struct bp_thrift_conn_s bp_thrift_conn_t;
typedef struct {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} bp_thrift_header_t;
int bp_thrift_connect(const char *host, int port, const char *path, double timeout, int waiter,
                      bp_thrift_conn_t **out, char *err, size_t errlen);
int bp_thrift_connect_fd(int fd, double timeout, int waiter, bp_thrift_conn_t **out, char *err,
                         size_t errlen);
int bp_thrift_conn_send(bp_thrift_conn_t *c, const char *msg, size_t len, int protocol,
                        const bp_thrift_header_t *headers, int nheaders, int oneway,
                        double timeout, size_t max_frame, int waiter);
const char *bp_thrift_conn_reply(const bp_thrift_conn_t *c, size_t *len, int *protocol);
int bp_thrift_conn_sent(const bp_thrift_conn_t *c);
const char *bp_thrift_conn_error(const bp_thrift_conn_t *c);
int bp_thrift_conn_broken(const bp_thrift_conn_t *c);
void bp_thrift_conn_close(bp_thrift_conn_t *c);
]])

local C = core.C
local ffi_string = ffi.string
local type, tostring, setmetatable, error, pcall, rawget = type, tostring, setmetatable, error, pcall, rawget
local format, floor, min = string.format, math.floor, math.min

local M = {}

local PROTOCOL_IDS = { binary = 0, compact = 1 }
local PROTOCOL_NAMES = { [0] = "binary", [1] = "compact" }

--------------------------------------------------------------------------------
-- Errors

--- A failure of the transport (Apache Thrift's TTransportException): `type`
--- is one of the constants below, `message` names the client, the method
--- and the endpoint.
-- (the one client error type, baseplate.clients.base, with class
-- "TTransportException")
local TransportException = require("baseplate.clients.base").ClientError
M.TransportException = TransportException

M.UNKNOWN, M.NOT_OPEN, M.TIMED_OUT, M.END_OF_FILE = 0, 1, 3, 4

-- A failure on the way, before the call's name is known: `detail`, whether
-- the request may go again on another connection, and its kind.
local function failure(kind, detail, retryable)
    return { _failure = true, kind = kind, detail = detail, retryable = retryable }
end

--------------------------------------------------------------------------------
-- Connections

local conn_out = ffi.new("bp_thrift_conn_t *[1]")
local len_cell = ffi.new("size_t[1]")
local proto_cell = ffi.new("int[1]")

-- (the new connection goes into `got` before the wait: the cell is shared
-- by every coroutine connecting at the same time)
local function start_connect(waiter, target, got)
    local rc
    if target.socket then -- a function giving a connected socket (baseplate.testing)
        local fd = target.socket()
        if fd < 0 then
            ffi.copy(core.errbuf, ("thrift: " .. core.strerror(fd)):sub(1, core.errbuf_size - 1))
            return fd
        end
        rc = C.bp_thrift_connect_fd(fd, target.timeout, waiter, conn_out, core.errbuf, core.errbuf_size)
    else
        rc = C.bp_thrift_connect(target.host, target.port or 0, target.path, target.timeout, waiter,
            conn_out, core.errbuf, core.errbuf_size)
    end
    got.c = conn_out[0]
    conn_out[0] = nil
    if got.c == nil then got.err = core.errmsg() end
    return rc
end

local function conn_error(conn, rc)
    local detail = conn.c ~= nil and ffi_string(C.bp_thrift_conn_error(conn.c)) or ""
    if detail == "" then detail = core.strerror(rc) end
    local where = conn.where
    if detail:sub(1, #where + 2) == where .. ": " then detail = detail:sub(#where + 3) end
    return detail
end

local function close_conn(conn)
    if conn.c ~= nil then
        C.bp_thrift_conn_close(ffi.gc(conn.c, nil))
        conn.c = nil
    end
end
M.close_conn = close_conn

-- Open a connection (the pool's connect): raises a failure, retryable.
local function open(target)
    local got = {}
    local rc = runtime.await(start_connect, target, got)
    local c = got.c
    if c == nil then error(failure("connect", got.err or core.strerror(rc), false), 0) end
    local conn = { c = ffi.gc(c, C.bp_thrift_conn_close), where = target.where }
    if rc ~= core.OK then
        local detail = conn_error(conn, rc)
        close_conn(conn)
        error(failure(rc == core.ETIMEDOUT and "timeout" or "connect", "connecting failed: " .. detail, true), 0)
    end
    return conn
end

local function usable(conn)
    return conn.c ~= nil and C.bp_thrift_conn_broken(conn.c) == 0
end

--------------------------------------------------------------------------------
-- A call on a connection

local hdr_cap = 0
local hdrs

local function start_send(waiter, conn, req)
    local rc = C.bp_thrift_conn_send(conn.c, req.msg, #req.msg, req.protocol_id, hdrs, req.nheaders,
        req.oneway and 1 or 0, req.timeout, req.max_frame, waiter)
    return rc
end

-- Send req on conn (inside pool:with) and read its reply: true and the
-- result, or false and the exception the server answered with (the
-- connection is fine either way). Transport failures raise.
local function exchange(conn, req)
    local headers = req.headers
    local n = #headers
    if n > hdr_cap then
        hdr_cap = math.max(n, 16)
        hdrs = ffi.new("bp_thrift_header_t[?]", hdr_cap)
    end
    for i = 1, n do
        local h = headers[i]
        local e = hdrs[i - 1]
        e.key, e.key_len, e.value, e.value_len = h[1], #h[1], h[2], #h[2]
    end
    req.nheaders = n
    local rc = runtime.await(start_send, conn, req)
    if rc ~= core.OK then
        local sent = conn.c ~= nil and C.bp_thrift_conn_sent(conn.c) ~= 0
        local kind = rc == core.ETIMEDOUT and "timeout" or "transport"
        error(failure(kind, conn_error(conn, rc), not sent), 0)
    end
    if req.oneway then return true, nil end
    local p = C.bp_thrift_conn_reply(conn.c, len_cell, proto_cell)
    local payload = ffi_string(p, len_cell[0])
    local protocol = PROTOCOL_NAMES[proto_cell[0]]
    local name, mtype, seqid, pos = codec.decode_message(payload, protocol)
    if not name then error(failure("protocol", "bad reply: " .. tostring(mtype), false), 0) end
    if name ~= req.method or seqid ~= req.seqid then
        error(failure("protocol", format("reply out of step: %s (seqid %d) to %s (seqid %d)", name, seqid,
            req.method, req.seqid), false), 0)
    end
    if mtype == codec.EXCEPTION then
        local x, derr = codec.application_exception:decode(payload, protocol, pos)
        if not x then error(failure("protocol", "bad TApplicationException: " .. tostring(derr), false), 0) end
        return false, thrift.ApplicationException(x.type or codec.app_error.UNKNOWN, x.message or "")
    elseif mtype ~= codec.REPLY then
        error(failure("protocol", "a reply of message type " .. tostring(mtype), false), 0)
    end
    local m = req.m
    local res, derr = m.result:decode(payload, protocol, pos)
    if not res then error(failure("protocol", "bad reply: " .. tostring(derr), false), 0) end
    if res.success ~= nil then return true, res.success end
    local exceptions, structs = m.exceptions, m.exception_structs
    for i = 1, #exceptions do
        local v = res[exceptions[i].name]
        if v ~= nil then return false, structs[i]:new(v) end
    end
    if m.returns == nil then return true, nil end
    return false, thrift.ApplicationException(codec.app_error.MISSING_RESULT, req.method .. " failed: unknown result")
end

--------------------------------------------------------------------------------
-- Configuration

local spec = {
    endpoint = config.Endpoint,
    size = config.Optional(config.Integer, 10),
    max_age = config.Optional(config.NonNegative(config.Timespan), 120),
    timeout = config.Optional(config.NonNegative(config.Timespan), 1),
    max_connection_attempts = config.Optional(config.Integer, 3),
    protocol = config.Optional(config.OneOf({ "binary", "compact" }), "binary"),
    max_frame_size = config.Optional(config.Integer, 16 * 1024 * 1024),
}

--- A connection pool from the keys under `prefix` ("users." for
--- users.endpoint…): endpoint (required), size (10), max_age (120 s),
--- timeout (1 s), max_connection_attempts (3), protocol (binary),
--- max_frame_size (16 MB). The pool carries the call settings too.
function M.pool_from_config(app_config, prefix, name)
    prefix = prefix or "thrift."
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, spec)
    local function bad(key, why) error(config.ConfigurationError(key_base .. "." .. key, why), 0) end
    if cfg.size < 1 then bad("size", "must be at least 1") end
    if cfg.max_connection_attempts < 1 then bad("max_connection_attempts", "must be at least 1") end
    if cfg.max_frame_size < 1024 or cfg.max_frame_size > 0x3fffffff then
        bad("max_frame_size", "must be 1024 to 2^30 - 1")
    end
    local e = cfg.endpoint
    local target = { timeout = cfg.timeout, where = tostring(e) }
    if e.family == "AF_UNIX" then
        target.path = e.path
    else
        target.host, target.port = config.socket_host(e.host), e.port
    end
    return M.pool(target, cfg, name or key_base, app_config["baseplate.service_name"])
end

--- A pool of connections to `target` ({ host, port } or { path }, or
--- { socket = f } with f returning a connected socket's descriptor; and
--- `where`, its name in errors, and `timeout`) with the settings of
--- pool_from_config in `cfg` (every key given).
function M.pool(target, cfg, name, service_name)
    local pool = Pool.new({
        name = name,
        size = cfg.size,
        timeout = cfg.timeout > 0 and cfg.timeout or 86400,
        recycle = cfg.max_age > 0 and cfg.max_age or nil,
        connect = function() return open(target) end,
        close = close_conn,
        usable = usable,
    })
    pool.endpoint = target.where
    pool.call_timeout = cfg.timeout
    pool.max_connection_attempts = cfg.max_connection_attempts
    pool.protocol = cfg.protocol
    pool.max_frame_size = cfg.max_frame_size
    pool.service_name = service_name
    return pool
end

--------------------------------------------------------------------------------
-- Calls

local next_seqid = 0

local function transport_exception(client, method, f)
    local ttype = f.kind == "timeout" and M.TIMED_OUT or (f.kind == "connect" and M.NOT_OPEN or M.UNKNOWN)
    return setmetatable({
        class = "TTransportException",
        type = ttype,
        message = format("thrift client %s: %s (%s) failed: %s", client._name, method,
            client._pool.endpoint, f.detail),
        client = client._name, endpoint = client._pool.endpoint, command = method,
    }, TransportException)
end

-- The span's error: a declared exception finishes its span with its
-- struct's short name.
local function span_error(err)
    local st = codec.struct_of(err)
    if st then return { class = thrift.short_name(st.name), error = err } end
    return err
end

-- Prometheus: Baseplate.py's thrift_client_* family, labelled by method
-- and client; the counter also by the exception's type and its
-- baseplate.thrift code (a struct's numeric `code` field) and name.
local thrift_labels = span_mod.label_memo()
local function set_metric_family(child, name, method, ok, res)
    local labels = thrift_labels(name .. "\0" .. method, "thrift_method", method, "thrift_client_name", name)
    local kind, code = "", nil
    if not ok then
        local st = codec.struct_of(res)
        kind = st and thrift.short_name(st.name) or span_mod.error_class(res)
        code = thrift.error_code(res)
    end
    child:set_metric_family("thrift_client", labels, span_mod.metric_labels(
        "thrift_exception_type", kind,
        "thrift_baseplate_status", code and ffi.string(C.bp_prom_error_code_name(code)) or "",
        "thrift_baseplate_status_code", code and format("%d", code) or ""))
end

local function add_trace_headers(headers, span, parent, context)
    local ti = span.trace_info
    headers[#headers + 1] = { "Trace", ti.trace_id }
    headers[#headers + 1] = { "Span", ti.span_id }
    if ti.parent_id then headers[#headers + 1] = { "Parent", ti.parent_id } end
    if ti.sampled ~= nil then headers[#headers + 1] = { "Sampled", ti.sampled and "1" or "0" } end
    if ti.flags then headers[#headers + 1] = { "Flags", format("%d", ti.flags) } end
    -- the edge context's raw bytes, as they came (an HTTP X-Edge-Request
    -- base64-decoded by the server span), as Baseplate.py's raw_edge_context
    local edge = parent.edge_request
    if edge == nil and type(context) == "table" then edge = context.raw_edge_context end
    if type(edge) == "string" and edge ~= "" then headers[#headers + 1] = { "Edge-Request", edge } end
end

-- Send the request, retried on a fresh connection while it failed before
-- anything was sent (up to max_connection_attempts); raise what failed.
local function run(client, req)
    local pool = client._pool
    local attempts = pool.max_connection_attempts
    local ok, good, value
    for attempt = 1, attempts do
        ok, good, value = pcall(pool.with, pool, exchange, req)
        if ok then break end
        local f = good
        if type(f) == "string" and f:find("no connection available", 1, true) then
            f = failure("timeout", f, false) -- the pool's: no slot came free in time
        elseif type(f) ~= "table" or not f._failure then
            error(f, 0) -- a bug, not the transport
        end
        if not f.retryable or attempt == attempts then
            if attempt > 1 then f.detail = f.detail .. format(" (after %d attempts)", attempt) end
            error(transport_exception(client, req.method, f), 0)
        end
    end
    if good then return value end
    error(value, 0)
end

local pack_args = thrift.pack_args

local function call(client, mname, m, ...)
    local args = pack_args(m)(...)
    local pool = client._pool
    next_seqid = next_seqid < 0x7fffffff and next_seqid + 1 or 1
    local protocol = pool.protocol
    local msg = codec.encode_message(mname, m.oneway and codec.ONEWAY or codec.CALL, next_seqid, m.args, args,
        protocol)
    local timeout = pool.call_timeout
    local headers = {}
    local span = client._span
    local context = span and span.context
    local ua = pool.service_name
    if not ua and type(context) == "table" then
        local bp = rawget(context, "_bp")
        ua = bp and bp.service_name
    end
    if ua then headers[#headers + 1] = { "User-Agent", ua } end
    local budget = timeout > 0 and timeout or nil
    if type(context) == "table" and type(context.time_remaining) == "function" then
        local left = context:time_remaining()
        if left then
            if left <= 0 then
                error(transport_exception(client, mname, failure("timeout",
                    "the caller's deadline passed before the call", false)), 2)
            end
            budget = budget and min(budget, left) or left
        end
    end
    if budget then
        headers[#headers + 1] = { "Deadline-Budget", format("%d", math.max(1, floor(budget * 1000 + 0.5))) }
    end
    local req = {
        method = mname, m = m, msg = msg, seqid = next_seqid, oneway = m.oneway, headers = headers,
        protocol_id = PROTOCOL_IDS[protocol], timeout = budget or 0, max_frame = pool.max_frame_size,
    }
    if span == nil then
        local res = run(client, req)
        return res
    end
    local child = span:make_child(client._name .. "." .. mname)
    add_trace_headers(headers, child, span, context)
    child:start()
    local ok, res = pcall(run, client, req)
    if span_mod.prometheus_on() then set_metric_family(child, client._name, mname, ok, res) end
    child:finish(not ok and span_error(res) or nil)
    if not ok then error(res, 0) end
    return res
end

--------------------------------------------------------------------------------
-- The client object: one method per method of the service

local Client = {}
M.Client = Client

-- Per service: method name -> function(client, ...).
local method_cache = setmetatable({}, { __mode = "k" })

-- (a function of its own: a closure made in client_index would make every
-- return from it close upvalues, which the JIT does not compile)
local function make_method(k, m)
    return function(this, ...)
        if getmetatable(this) ~= Client then
            error(format("%s: call it as a method (client:%s(...))", k, k), 2)
        end
        return call(this, k, m, ...)
    end
end

local function client_index(self, k)
    local service = rawget(self, "_service")
    local fns = method_cache[service]
    if not fns then
        fns = {}
        method_cache[service] = fns
    end
    local f = fns[k]
    if f then return f end
    local m = type(k) == "string" and service.methods[k]
    if not m then return nil end
    f = make_method(k, m)
    fns[k] = f
    return f
end

Client.__index = client_index
Client.__dir = function(self)
    local names = {}
    for name in pairs(rawget(self, "_service").methods) do names[#names + 1] = name end
    return names
end
Client.__tostring = function(self)
    return format("thrift client %s (%s)", rawget(self, "_name"), rawget(self, "_pool").endpoint)
end

--- A client of `service` (schema:service(name)) over `pool`
--- (pool_from_config), named `name` in spans and errors; `span` (optional)
--- is the span its calls are children of.
function M.client(service, pool, name, span)
    if type(service) ~= "table" or type(service.methods) ~= "table" then
        error("thrift client: expected a service (schema:service(name))", 2)
    end
    if not method_cache[service] then -- every method's function, once per service
        local fns = {}
        for k, m in pairs(service.methods) do fns[k] = make_method(k, m) end
        method_cache[service] = fns
    end
    return setmetatable({ _service = service, _pool = pool, _name = name or "thrift", _span = span }, Client)
end

--- A client (without a span) from the keys under `prefix` of app_config:
--- for scripts and the shell.
function M.client_from_config(service, app_config, prefix)
    prefix = prefix or "thrift."
    local name = prefix:gsub("%.$", "")
    return M.client(service, M.pool_from_config(app_config, prefix, name), name)
end

--- The pool behind a client object.
function M.pool_of(client)
    return rawget(client, "_pool")
end

--------------------------------------------------------------------------------
-- The context factory and its config parser

local base = require("baseplate.clients.base")
M.ThriftContextFactory = base.Factory

local function make_client(name, span, factory)
    return M.client(factory.service, factory.pool, name, span)
end

function M.context_factory(pool, service)
    return base.context_factory(pool, make_client, { service = service, prom_pool = "thrift" })
end

local function build(key_path, raw, parser)
    return M.context_factory(M.pool_from_config(raw, key_path .. ".", key_path), parser.service)
end

--- For configure_context: { users = ThriftClient(schema:service("Users")) }
--- reads users.endpoint and the other keys, and puts a client of the
--- service on each context as `users`.
function M.ThriftClient(service)
    if type(service) ~= "table" or type(service.methods) ~= "table" then
        error("ThriftClient: expected a service (schema:service(name))", 2)
    end
    return base.client_parser(build, { service = service })
end

return M
