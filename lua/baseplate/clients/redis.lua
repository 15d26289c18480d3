-- Redis: non-blocking (hiredis on the event loop), pooled and instrumented.
--
--   bp:configure_context({ foo = redis.RedisClient() })
--   -- [app:main] foo.url = redis://localhost:6379/0
--   request.foo:set("k", "v")
--   request.foo:get("k")                   --> "v"
--   local p = request.foo:pipeline("warm")  -- MULTI/EXEC by default
--   p:incr("a"); p:expire("a", 60)
--   p:execute()                             --> { 1, 1 }
--
-- Every command is a child span "{name}.{COMMAND}" of the request's span;
-- a pipeline is "{name}.pipeline_{pipeline name}". Replies become Lua
-- values: nil, numbers, strings, arrays (tables with n), and a Redis error
-- reply raises a RedisError the handler can catch.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local Pool = require("baseplate.clients.pool")
local span_mod = require("baseplate.span")

ffi.cdef([[
typedef struct bp_redis_conn_s bp_redis_conn_t;
typedef struct bp_redis_reply_s bp_redis_reply_t;
typedef struct { const char *ca_file; int verify; } bp_redis_tls_t;
int bp_redis_connect_tls(const char *host, int port, double connect_timeout,
                         const bp_redis_tls_t *tls, int waiter, bp_redis_conn_t **out,
                         char *err, size_t errlen);
int bp_redis_send(bp_redis_conn_t *c, int ncmds, const int *argcs, const char *const *argv,
                  const size_t *argvlen, double timeout, int waiter);
int bp_redis_reply_count(const bp_redis_conn_t *c);
const bp_redis_reply_t *bp_redis_reply(const bp_redis_conn_t *c, int i);
int bp_redis_reply_type(const bp_redis_reply_t *r);
long long bp_redis_reply_integer(const bp_redis_reply_t *r);
const char *bp_redis_reply_string(const bp_redis_reply_t *r, size_t *len);
size_t bp_redis_reply_elements(const bp_redis_reply_t *r);
const bp_redis_reply_t *bp_redis_reply_element(const bp_redis_reply_t *r, size_t i);
const char *bp_redis_error(const bp_redis_conn_t *c);
int bp_redis_broken(const bp_redis_conn_t *c);
int bp_redis_busy(const bp_redis_conn_t *c);
void bp_redis_close(bp_redis_conn_t *c);
]])

local C = core.C
local ffi_string = ffi.string
local type, tostring, tonumber, select, setmetatable, error, pcall =
    type, tostring, tonumber, select, setmetatable, error, pcall
local upper, format = string.upper, string.format

local M = {}

-- redis.h's BP_REDIS_* reply types (tests/lua/test-ffi-decls.lua checks them)
local STRING, ARRAY, INTEGER, NIL, STATUS, ERROR = 1, 2, 3, 4, 5, 6
M.REPLY_STRING, M.REPLY_ARRAY, M.REPLY_INTEGER = STRING, ARRAY, INTEGER
M.REPLY_NIL, M.REPLY_STATUS, M.REPLY_ERROR = NIL, STATUS, ERROR

--------------------------------------------------------------------------------
-- Errors

-- (the one client error type, baseplate.clients.base: class "RedisError"
-- for an error reply)
local RedisError = require("baseplate.clients.base").ClientError
M.RedisError = RedisError

-- A Redis error reply: the connection is fine (the pool keeps it).
local function reply_error(msg)
    return setmetatable({ class = "RedisError", message = msg, connection_ok = true }, RedisError)
end

-- A failure of the connection itself (it is discarded).
local function connection_error(class, msg, endpoint, command, client)
    return setmetatable({ class = class, message = msg, endpoint = endpoint, command = command, client = client },
        RedisError)
end

--------------------------------------------------------------------------------
-- Connections

local len_cell = ffi.new("size_t[1]")

local function convert(r)
    local t = C.bp_redis_reply_type(r)
    if t == STRING or t == STATUS then
        local p = C.bp_redis_reply_string(r, len_cell)
        return ffi_string(p, len_cell[0])
    elseif t == INTEGER then
        return tonumber(C.bp_redis_reply_integer(r))
    elseif t == NIL then
        return nil
    elseif t == ERROR then
        local p = C.bp_redis_reply_string(r, len_cell)
        return reply_error(ffi_string(p, len_cell[0]))
    elseif t == ARRAY then
        local n = tonumber(C.bp_redis_reply_elements(r))
        local out = { n = n }
        for i = 1, n do
            out[i] = convert(C.bp_redis_reply_element(r, i - 1))
        end
        return out
    end
    return nil
end

local function start_connect(waiter, cfg, out)
    return C.bp_redis_connect_tls(cfg.host, cfg.port, cfg.connect_timeout, cfg.tls_c, waiter, out,
        core.errbuf, core.errbuf_size)
end

-- The argument arrays of the command being sent, shared by every send:
-- bp_redis_send formats (copies) the commands before it returns, so they
-- are free again as soon as it has.
local args_cap, argcs_cap = 0, 0
local argcs, argv, argvlen

local function reserve(ncmds, total)
    if ncmds > argcs_cap then
        argcs_cap = math.max(ncmds, 2 * argcs_cap, 16)
        argcs = ffi.new("int[?]", argcs_cap)
    end
    if total > args_cap then
        args_cap = math.max(total, 2 * args_cap, 64)
        argv = ffi.new("const char *[?]", args_cap)
        argvlen = ffi.new("size_t[?]", args_cap)
    end
end

local function start_send(waiter, conn, ncmds, timeout)
    local rc = C.bp_redis_send(conn.c, ncmds, argcs, argv, argvlen, timeout, waiter)
    return rc
end

local function status_error(conn, rc, what, timeout)
    if rc == core.ETIMEDOUT then
        return connection_error("TimeoutError",
            format("redis %s: %s timed out after %gs", conn.where, what, timeout or conn.timeout), conn.where, what,
            conn.client)
    end
    local detail = conn.c ~= nil and ffi_string(C.bp_redis_error(conn.c)) or core.strerror(rc)
    if detail == "" then detail = core.strerror(rc) end
    if detail:sub(1, #conn.where + 2) == conn.where .. ": " then detail = detail:sub(#conn.where + 3) end
    return connection_error("ConnectionError", format("redis %s: %s failed: %s", conn.where, what, detail),
        conn.where, what, conn.client)
end

-- Send commands (a list of argument lists) in one round trip; returns the
-- list of converted replies. `timeout` overrides the socket timeout.
local function send(conn, cmds, what, timeout)
    local ncmds, total = #cmds, 0
    for i = 1, ncmds do total = total + #cmds[i] end
    reserve(ncmds, total)
    local k = 0
    for i = 1, ncmds do
        local cmd = cmds[i]
        argcs[i - 1] = #cmd
        for j = 1, #cmd do
            local s = cmd[j]
            if type(s) ~= "string" then
                s = tostring(s)
                cmd[j] = s -- argv points into the string: keep it alive until the send
            end
            argv[k] = s
            argvlen[k] = #s
            k = k + 1
        end
    end
    timeout = timeout or conn.timeout
    local rc = runtime.await(start_send, conn, ncmds, timeout)
    if rc ~= core.OK then error(status_error(conn, rc, what, timeout), 0) end
    local replies = {}
    for i = 1, C.bp_redis_reply_count(conn.c) do
        replies[i] = convert(C.bp_redis_reply(conn.c, i - 1))
    end
    return replies
end

local function open(cfg)
    local out = ffi.new("bp_redis_conn_t *[1]")
    local rc = runtime.await(start_connect, cfg, out)
    local conn = { c = out[0], timeout = cfg.timeout or 0, where = cfg.where, client = cfg.client }
    if conn.c == nil then
        error(connection_error("ConnectionError", format("redis %s: %s", cfg.where, core.errmsg()), cfg.where,
            "connect", cfg.client), 0)
    end
    ffi.gc(conn.c, C.bp_redis_close)
    if rc ~= core.OK then
        local err = status_error(conn, rc, "connect")
        C.bp_redis_close(ffi.gc(conn.c, nil))
        conn.c = nil
        error(err, 0)
    end
    local setup = {}
    if cfg.credentials_secret then
        -- fetched at every connect, so that a rotated password is used at once
        local ok, creds = pcall(cfg.secrets.get_credentials, cfg.secrets, cfg.credentials_secret)
        if not ok then
            M.close_conn(conn)
            error(connection_error("ConnectionError", format("redis %s: credentials_secret: %s", cfg.where,
                tostring(type(creds) == "table" and creds.message or creds)), cfg.where, "connect", cfg.client), 0)
        end
        setup[#setup + 1] = { "AUTH", creds.username, creds.password }
    elseif cfg.password then
        setup[#setup + 1] = { "AUTH", cfg.password }
    end
    if cfg.db and cfg.db ~= 0 then setup[#setup + 1] = { "SELECT", tostring(cfg.db) } end
    if cfg.readonly then setup[#setup + 1] = { "READONLY" } end -- (a cluster replica's reads)
    if #setup > 0 then
        local replies = send(conn, setup, "connection setup")
        for i = 1, #setup do
            if type(replies[i]) == "table" and getmetatable(replies[i]) == RedisError then
                M.close_conn(conn)
                error(connection_error("ConnectionError",
                    format("redis %s: %s failed: %s", cfg.where, setup[i][1], replies[i].message)), 0)
            end
        end
    end
    return conn
end

function M.close_conn(conn)
    if conn.c ~= nil then
        C.bp_redis_close(ffi.gc(conn.c, nil))
        conn.c = nil
    end
end

local function usable(conn)
    return conn.c ~= nil and C.bp_redis_broken(conn.c) == 0
end

--------------------------------------------------------------------------------
-- Configuration

local function unescape(v)
    return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Parse a redis:// or rediss:// URL: host, port, db, password, and for
--- rediss:// tls = { verify = bool, ca_file = path or nil } from the query
--- parameters ssl_cert_reqs (required, the default; optional; none) and
--- ssl_ca_certs, as redis-py reads them.
function M.parse_url(url)
    local scheme, rest = url:match("^(%a+)://(.*)$")
    if not scheme then error("expected a URL like redis://localhost:6379/0", 0) end
    if scheme ~= "redis" and scheme ~= "rediss" then
        error("unknown scheme " .. scheme .. "://, expected redis:// or rediss://", 0)
    end
    local query
    rest, query = rest:match("^([^?]*)%??(.*)$")
    local userinfo, hostpart = rest:match("^([^@]*)@(.*)$")
    hostpart = hostpart or rest
    local password
    if userinfo then password = unescape(userinfo:match(":(.*)$") or userinfo) end
    if password == "" then password = nil end
    local hostport, path = hostpart:match("^([^/]*)(.*)$")
    local host, port
    if hostport:sub(1, 1) == "[" then
        host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
    else
        host, port = hostport:match("^([^:]*):?(%d*)$")
    end
    if not host or host == "" then error("no host in " .. url, 0) end
    port = tonumber(port ~= "" and port or "6379")
    if port < 1 or port > 65535 then error("invalid port in " .. url, 0) end
    local db = 0
    if path ~= "" and path ~= "/" then
        db = tonumber(path:match("^/(%d+)$") or "")
        if not db then error("invalid database number in " .. url, 0) end
    end
    local target = { host = host, port = port, db = db, password = password }
    local params = {}
    for k, v in query:gmatch("([^&=]+)=?([^&]*)") do params[unescape(k)] = unescape(v) end
    if scheme == "rediss" then
        local reqs = params.ssl_cert_reqs or "required"
        if reqs ~= "required" and reqs ~= "optional" and reqs ~= "none" then
            error("ssl_cert_reqs must be required, optional or none, not " .. reqs, 0)
        end
        target.tls = { verify = reqs ~= "none", ca_file = params.ssl_ca_certs }
    elseif params.ssl_cert_reqs or params.ssl_ca_certs then
        error("ssl_cert_reqs and ssl_ca_certs need a rediss:// URL", 0)
    end
    return target
end

local spec = {
    url = config.String,
    max_connections = config.Optional(config.Integer, 50),
    socket_connect_timeout = config.Optional(config.NonNegative(config.Timespan), 5),
    socket_timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    pool_timeout = config.Optional(config.NonNegative(config.Timespan), 5),
    credentials_secret = config.Optional(config.String, nil),
}

--- A connection pool from the keys under `prefix` ("redis." by default):
--- url, max_connections, socket_connect_timeout, socket_timeout,
--- pool_timeout, credentials_secret (looked up in `secrets`, a
--- baseplate.lib.secrets store).
function M.pool_from_config(app_config, prefix, name, secrets)
    prefix = prefix or "redis."
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, spec)
    local ok, target = pcall(M.parse_url, cfg.url)
    if not ok then error(config.ConfigurationError(key_base .. ".url", target), 0) end
    if cfg.credentials_secret then
        if not secrets then
            error(config.ConfigurationError(key_base .. ".credentials_secret", "a secrets store is needed to use it"
                .. " (RedisClient({ secrets = store }), or pool_from_config's secrets argument)"), 0)
        end
        target.credentials_secret, target.secrets = cfg.credentials_secret, secrets
    end
    if cfg.max_connections < 1 then
        error(config.ConfigurationError(key_base .. ".max_connections", "must be at least 1"), 0)
    end
    M.prepare_tls(target)
    target.connect_timeout = cfg.socket_connect_timeout
    target.timeout = cfg.socket_timeout or 0
    target.where = target.host .. ":" .. target.port
    target.client = name or key_base
    return M.target_pool(target, cfg.max_connections, cfg.pool_timeout, name or key_base)
end

--- Give parse_url's `target` the C form of its TLS settings (tls_c), if it
--- has any.
function M.prepare_tls(target)
    if not target.tls then return end
    local tls = ffi.new("bp_redis_tls_t")
    tls.verify = target.tls.verify and 1 or 0
    if target.tls.ca_file then
        target.tls_ca_file = target.tls.ca_file -- keeps the string alive for tls.ca_file
        tls.ca_file = target.tls_ca_file
    end
    target.tls_c = tls
end

--- A pool of connections to `target` (parse_url's table with
--- connect_timeout, timeout, where, client; readonly for a cluster
--- replica): `size` connections, waiting at most `pool_timeout` for one.
function M.target_pool(target, size, pool_timeout, name)
    local pool = Pool.new({
        name = name,
        size = size,
        timeout = pool_timeout,
        connect = function() return open(target) end,
        close = M.close_conn,
        usable = usable,
    })
    pool.redis_db = target.db or 0 -- (the redis_database label)
    return pool
end

--------------------------------------------------------------------------------
-- The context object

local function run(conn, cmds, what, timeout)
    return send(conn, cmds, what, timeout)
end

-- One command: its reply, an error reply raised (the connection is kept).
local function run_one(conn, cmds, what)
    local r = send(conn, cmds, what)[1]
    if type(r) == "table" and getmetatable(r) == RedisError then
        r.client, r.endpoint, r.command = conn.client, conn.where, what
        error(r, 0)
    end
    return r
end

-- Run `fn(conn, cmds, what)` on a pooled connection inside a child span of
-- `span`, so that an error (a Redis error reply too) fails the span.
local function in_span(_, pool, fn, cmds, what)
    return pool:with(fn, cmds, what)
end

-- Prometheus: Baseplate.py's redis_client_* family, its labels made once
-- per client, database, command and type.
local redis_labels = span_mod.label_memo()
function M.metric_labels(name, db, command, kind)
    return redis_labels(name .. "\0" .. tostring(db) .. "\0" .. command .. "\0" .. kind,
        "redis_client_name", name, "redis_command", command:lower(), "redis_database", db, "redis_type", kind)
end

local function traced(pool, span, name, command, fn, cmds, what, trace_name)
    if span == nil then return pool:with(fn, cmds, what) end
    local child = span:make_child(trace_name or (name .. "." .. command))
    if span_mod.prometheus_on() then
        child:set_metric_family("redis_client", M.metric_labels(name, pool.redis_db or 0, command, "standalone"))
    end
    return child:with(in_span, pool, fn, cmds, what)
end

local Monitored = {}
M.MonitoredRedisConnection = Monitored

--- An __index for an object with `methods` on which any other name is a
--- command: obj:hset(…) is obj:execute_command("HSET", …) (the method is
--- made once, then found in `methods`).
function M.command_index(methods)
    return function(_, k)
        local m = methods[k]
        if m ~= nil then return m end
        if type(k) ~= "string" or k:sub(1, 1) == "_" then return nil end
        local cmd = upper(k)
        local f = function(this, ...) return this:execute_command(cmd, ...) end
        methods[k] = f
        return f
    end
end
local monitored_index = M.command_index(Monitored)

-- The shell's Tab completion lists the methods and the commands used so far
-- (any other command name works too).
local function monitored_dir()
    local names = {}
    for k in pairs(Monitored) do names[#names + 1] = k end
    return names
end

local monitored_mt = { __index = monitored_index, __dir = monitored_dir }

function M.monitored(name, span, pool)
    return setmetatable({ _name = name, _span = span, _pool = pool }, monitored_mt)
end

--- Run any command: execute_command("HSET", "h", "f", "v").
function Monitored:execute_command(...)
    local n = select("#", ...)
    if n == 0 then error("execute_command: no command", 2) end
    local cmd = { ... }
    cmd[1] = upper(tostring(cmd[1]))
    return traced(self._pool, self._span, self._name, cmd[1], run_one, { cmd }, cmd[1])
end

local Pipeline = {}
local pipeline_mt = { __index = M.command_index(Pipeline) }

--- A pipeline: commands called on it are queued, execute() sends them in
--- one round trip (inside MULTI/EXEC unless transaction is false) and
--- returns their replies in order.
function Monitored:pipeline(name, transaction)
    if type(name) ~= "string" or name == "" then error("pipeline: a name is required", 2) end
    return setmetatable({ _conn = self, _name = name, _cmds = {}, _transaction = transaction ~= false },
        pipeline_mt)
end

function Pipeline:execute_command(...)
    local args = { ... }
    args[1] = upper(tostring(args[1]))
    self._cmds[#self._cmds + 1] = args
    return self
end

local function is_error(r)
    return type(r) == "table" and getmetatable(r) == RedisError
end

-- Send a pipeline's commands and check its replies (inside its span).
local function run_pipeline(conn, p, what)
    local replies = send(conn, p.cmds, what)
    local results
    if p.transaction then
        for i = 1, #replies - 1 do -- MULTI and the QUEUED replies: an error here aborted the EXEC
            if is_error(replies[i]) then error(replies[i], 0) end
        end
        results = replies[#replies]
        if results == nil then error(reply_error("EXECABORT transaction discarded"), 0) end
    else
        results = { n = p.n }
        for i = 1, p.n do results[i] = replies[i] end
    end
    for i = 1, results.n or #results do
        if is_error(results[i]) then error(results[i], 0) end
    end
    return results
end

function Pipeline:execute()
    local cmds = self._cmds
    self._cmds = {}
    if #cmds == 0 then return { n = 0 } end
    local conn = self._conn
    local send_cmds = cmds
    if self._transaction then
        send_cmds = { { "MULTI" } }
        for i = 1, #cmds do send_cmds[i + 1] = cmds[i] end
        send_cmds[#send_cmds + 1] = { "EXEC" }
    end
    return traced(conn._pool, conn._span, conn._name, "pipeline", run_pipeline,
        { cmds = send_cmds, transaction = self._transaction, n = #cmds }, "pipeline " .. self._name,
        conn._name .. ".pipeline_" .. self._name)
end

--------------------------------------------------------------------------------
-- The context factory and its config parser

local base = require("baseplate.clients.base")
M.RedisContextFactory = base.Factory

local function make_monitored(name, span, factory)
    return M.monitored(name, span, factory.pool)
end

function M.context_factory(pool)
    return base.context_factory(pool, make_monitored, { prom_pool = "redis" })
end

local function build(key_path, raw, parser)
    return M.context_factory(M.pool_from_config(raw, key_path .. ".", key_path, parser.secrets))
end

--- For configure_context: { foo = RedisClient() } reads foo.url and the
--- other keys, and puts a MonitoredRedisConnection on each request as foo.
--- `opts.secrets` is the secrets store for foo.credentials_secret.
function M.RedisClient(opts)
    return base.client_parser(build, { secrets = opts and opts.secrets })
end

-- What baseplate.clients.redis_cluster runs commands with: the same
-- connections, replies and errors.
M.send = send
M.is_error = is_error
M.connection_error = connection_error

--------------------------------------------------------------------------------
-- MessageQueue

local Queue = {}
Queue.__index = Queue

--- A Redis list used as a queue: put(message), get(timeout), close().
function M.MessageQueue(name, pool)
    return setmetatable({ name = name, pool = pool }, Queue)
end

function Queue:put(message)
    self.pool:with(run, { { "RPUSH", self.name, tostring(message) } }, "put")
end

--- Wait up to `timeout` seconds (rounded up; nil: forever) for a message;
--- raises TimeoutError when none came.
function Queue:get(timeout)
    local t = timeout and math.ceil(timeout) or 0
    -- the server answers after t seconds: wait a little longer than that
    local replies = self.pool:with(run, { { "BLPOP", self.name, tostring(t) } }, "get", t > 0 and t + 5 or 0)
    local r = replies[1]
    if r == nil then
        error(setmetatable({ class = "TimeoutError", message = "queue " .. self.name .. ": no message within "
            .. t .. "s", connection_ok = true }, RedisError), 2)
    end
    return r[2]
end

--- Not implemented for the Redis queue (as in Baseplate.py).
function Queue:unlink()
    error("MessageQueue:unlink is not implemented for the Redis queue", 2)
end

function Queue:close()
    self.pool:with(run, { { "DEL", self.name } }, "close")
end

return M
