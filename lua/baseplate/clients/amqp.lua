-- AMQP 0-9-1 (RabbitMQ): connections on the event loop (rabbitmq-c,
-- src/clients/amqp.c) and the producer, Baseplate.py's KombuProducer.
--
--   bp:configure_context({ foo = amqp.AmqpProducer() })
--   -- [app:main] foo.hostname = amqp://guest:guest@rabbit.local:5672
--   --            foo.exchange_name = bar
--   --            foo.exchange_type = topic
--   context.foo:publish({ link = 42 }, { routing_key = "link_created" })
--
-- publish waits (its coroutine yields) until the broker confirms the
-- message (publisher confirms), in a child span "{name}.publish". The body
-- is serialized by the producer's serializer (JSON by default). See
-- docs/amqp.md.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local base = require("baseplate.clients.base")
local Pool = require("baseplate.clients.pool")

ffi.cdef([[
typedef struct bp_amqp_conn_s bp_amqp_conn_t;
typedef struct bp_amqp_delivery_s bp_amqp_delivery_t;
typedef struct {
  const char *host;
  int port;
  const char *vhost;
  const char *user;
  const char *password;
  int heartbeat;
  double timeout;
  int tls;
  int tls_verify_peer;
  int tls_verify_hostname;
  const char *tls_ca_certs;
  const char *tls_certfile;
  const char *tls_keyfile;
} bp_amqp_options_t;
int bp_amqp_connect(const bp_amqp_options_t *o, int waiter, bp_amqp_conn_t **out,
                    char *err, size_t errlen);
int bp_amqp_exchange_declare(bp_amqp_conn_t *c, const char *name, const char *type,
                             int durable, int auto_delete, int waiter);
int bp_amqp_queue_declare(bp_amqp_conn_t *c, const char *name, int durable,
                          int exclusive, int auto_delete, int waiter);
int bp_amqp_queue_bind(bp_amqp_conn_t *c, const char *queue, const char *exchange,
                       const char *routing_key, int waiter);
int bp_amqp_qos(bp_amqp_conn_t *c, int prefetch_count, int waiter);
int bp_amqp_consume(bp_amqp_conn_t *c, const char *queue, int waiter);
int bp_amqp_confirm_select(bp_amqp_conn_t *c, int waiter);
int bp_amqp_publish(bp_amqp_conn_t *c, const char *exchange, const char *routing_key,
                    const char *body, size_t len, const char *content_type,
                    int persistent, int nheaders, const char *const *keys,
                    const char *const *vals, int waiter);
int bp_amqp_next(bp_amqp_conn_t *c, int waiter, bp_amqp_delivery_t **out);
int bp_amqp_ack(bp_amqp_conn_t *c, uint64_t delivery_tag);
int bp_amqp_reject(bp_amqp_conn_t *c, uint64_t delivery_tag, int requeue);
const char *bp_amqp_error(const bp_amqp_conn_t *c);
int bp_amqp_broken(const bp_amqp_conn_t *c);
int bp_amqp_queued(const bp_amqp_conn_t *c);
void bp_amqp_close(bp_amqp_conn_t *c);
enum {
  BP_AMQP_EXCHANGE = 0,
  BP_AMQP_ROUTING_KEY = 1,
  BP_AMQP_CONSUMER_TAG = 2,
  BP_AMQP_BODY = 3,
  BP_AMQP_CONTENT_TYPE = 4,
  BP_AMQP_CONTENT_ENCODING = 5,
  BP_AMQP_MESSAGE_ID = 6
};
uint64_t bp_amqp_delivery_tag(const bp_amqp_delivery_t *d);
int bp_amqp_delivery_redelivered(const bp_amqp_delivery_t *d);
const char *bp_amqp_delivery_field(const bp_amqp_delivery_t *d, int which, size_t *len);
int bp_amqp_delivery_nheaders(const bp_amqp_delivery_t *d);
const char *bp_amqp_delivery_header(const bp_amqp_delivery_t *d, int i, const char **key,
                                    size_t *keylen, size_t *len);
void bp_amqp_delivery_free(bp_amqp_delivery_t *d);
]])

local C = core.C
local ffi_string = ffi.string
local type, tostring, tonumber, setmetatable, error, pcall = type, tostring, tonumber, setmetatable, error, pcall
local format = string.format

local M = {}

--------------------------------------------------------------------------------
-- Errors: the one client error type (class "ConnectionError",
-- "TimeoutError", or "AmqpError" for a message the broker refused)

local ClientError = base.ClientError

local function amqp_error(class, message, endpoint, command, client)
    return setmetatable({ class = class, message = message, endpoint = endpoint, command = command,
                          client = client }, ClientError)
end

local function conn_error(conn, rc, what)
    local detail = conn.c ~= nil and ffi_string(C.bp_amqp_error(conn.c)) or ""
    if detail == "" then detail = core.strerror(rc) end
    local prefix = "amqp " .. conn.where .. ": "
    if detail:sub(1, #prefix) == prefix then detail = detail:sub(#prefix + 1) end
    local class = rc == core.ETIMEDOUT and "TimeoutError" or "ConnectionError"
    return amqp_error(class, format("amqp %s: %s failed: %s", conn.where, what, detail), conn.where, what,
        conn.client)
end

--------------------------------------------------------------------------------
-- Connections

--- Parse an AMQP URL (amqp://user:password@host:port/vhost, or amqps://
--- for TLS, port 5671 by default) or a bare host[:port]: { host, port,
--- user, password, vhost, tls }. The vhost is
--- percent-decoded ("%2f" is "/"); an empty path is the default vhost "/".
function M.parse_url(url)
    if type(url) ~= "string" or url == "" then error("an AMQP URL or host name is required", 0) end
    local rest = url:match("^amqp://(.*)$")
    local tls = false
    if not rest then
        rest = url:match("^amqps://(.*)$")
        tls = rest ~= nil
    end
    if not rest then
        if url:find("://", 1, true) then error("only amqp:// URLs are supported (amqps:// for TLS)", 0) end
        rest = url
    end
    local unescape = function(v) return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    local t = { port = tls and 5671 or 5672, tls = tls or nil }
    local authority, path = rest:match("^([^/]*)(.*)$")
    local userinfo, hostport = authority:match("^(.*)@([^@]*)$")
    if userinfo then
        local u, p = userinfo:match("^([^:]*):(.*)$")
        t.user = unescape(u or userinfo)
        t.password = p and unescape(p) or nil
    else
        hostport = authority
    end
    local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
    if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
    if not host or host == "" then error("no host in '" .. (userinfo and "…@" .. hostport or url) .. "'", 0) end
    t.host = host
    if port and port ~= "" then
        t.port = tonumber(port)
        if t.port < 1 or t.port > 65535 then error("port out of range", 0) end
    end
    if path ~= "" and path ~= "/" then t.vhost = unescape(path:sub(2)) end
    return t
end

local function start_connect(waiter, o, out)
    return C.bp_amqp_connect(o, waiter, out, core.errbuf, core.errbuf_size)
end

local Connection = {}
Connection.__index = Connection
M.Connection = Connection

--- Connect (waits): `target` is { host, port, vhost, user, password,
--- heartbeat (seconds), timeout (seconds), client (a name for errors),
--- and optionally credentials_secret with secrets (a
--- baseplate.lib.secrets store): the user and password then come from that
--- credential secret, read at every connect so that a rotated password is
--- used by the next connection }. Raises a ConnectionError or TimeoutError.
function M.connect(target)
    local where = target.where or (target.host .. ":" .. (target.port or 5672))
    local user, password = target.user, target.password
    if target.credentials_secret then
        local ok, creds = pcall(target.secrets.get_credentials, target.secrets, target.credentials_secret)
        if not ok then
            error(amqp_error("ConnectionError", format("amqp %s: credentials_secret: %s", where,
                tostring(type(creds) == "table" and creds.message or creds)), where, "connect", target.client), 0)
        end
        user, password = creds.username, creds.password
    end
    local o = ffi.new("bp_amqp_options_t")
    o.host, o.port = target.host, target.port or 5672
    o.vhost, o.user, o.password = target.vhost, user, password
    o.heartbeat = target.heartbeat or 0
    o.timeout = target.timeout or 0
    if target.tls then
        o.tls = 1
        o.tls_verify_peer = target.tls_verify_peer == false and 0 or 1
        o.tls_verify_hostname = target.tls_verify_hostname == false and 0 or 1
        o.tls_ca_certs, o.tls_certfile, o.tls_keyfile = target.tls_ca_certs, target.tls_certfile, target.tls_keyfile
    end
    local out = ffi.new("bp_amqp_conn_t *[1]")
    local rc = runtime.await(start_connect, o, out)
    local conn = setmetatable({ c = out[0], where = where, client = target.client }, Connection)
    if conn.c == nil then
        error(amqp_error("ConnectionError", format("amqp %s: %s", where, core.errmsg()), where, "connect",
            target.client), 0)
    end
    ffi.gc(conn.c, C.bp_amqp_close)
    if rc ~= core.OK then
        local err = conn_error(conn, rc, "connect")
        conn:close()
        error(err, 0)
    end
    return conn
end

function Connection:close()
    if self.c ~= nil then
        C.bp_amqp_close(ffi.gc(self.c, nil))
        self.c = nil
    end
end

function Connection:broken()
    return self.c == nil or C.bp_amqp_broken(self.c) ~= 0
end

function Connection:error()
    return self.c ~= nil and ffi_string(C.bp_amqp_error(self.c)) or "closed"
end

local function start_rpc(waiter, fn, conn, args)
    if conn.c == nil then return core.ECLOSED end
    return fn(conn.c, args[1], args[2], args[3], args[4], waiter)
end

-- Send a method the broker answers and wait for the answer.
local function rpc(conn, what, fn, a, b, c, d)
    local rc = runtime.await(start_rpc, fn, conn, { a, b, c, d })
    if rc ~= core.OK then error(conn_error(conn, rc, what), 0) end
end

local function flag(v) return v and 1 or 0 end

function Connection:declare_exchange(name, kind, durable, auto_delete)
    rpc(self, "exchange.declare " .. name, function(c, n, k, du, ad, w)
        return C.bp_amqp_exchange_declare(c, n, k, du, ad, w)
    end, name, kind or "direct", flag(durable ~= false), flag(auto_delete))
end

function Connection:declare_queue(name, durable, exclusive, auto_delete)
    rpc(self, "queue.declare " .. name, function(c, n, du, ex, ad, w)
        return C.bp_amqp_queue_declare(c, n, du, ex, ad, w)
    end, name, flag(durable ~= false), flag(exclusive), flag(auto_delete))
end

function Connection:bind(queue, exchange, routing_key)
    rpc(self, "queue.bind " .. queue, function(c, q, e, k, _, w)
        return C.bp_amqp_queue_bind(c, q, e, k, w)
    end, queue, exchange, routing_key)
end

function Connection:qos(prefetch)
    rpc(self, "basic.qos", function(c, n, _, _, _, w) return C.bp_amqp_qos(c, n, w) end, prefetch)
end

function Connection:consume(queue)
    rpc(self, "basic.consume " .. queue, function(c, q, _, _, _, w) return C.bp_amqp_consume(c, q, w) end, queue)
end

function Connection:confirm_select()
    rpc(self, "confirm.select", function(c, _, _, _, _, w) return C.bp_amqp_confirm_select(c, w) end)
end

-- Header arrays for publish, reused (bp_amqp_publish copies before it returns).
local hcap = 0
local hkeys, hvals

local function start_publish(waiter, conn, p)
    if conn.c == nil then return core.ECLOSED end
    return C.bp_amqp_publish(conn.c, p.exchange, p.routing_key, p.body, #p.body, p.content_type,
        p.persistent and 1 or 0, p.nheaders, hkeys, hvals, waiter)
end

--- Publish p = { exchange, routing_key, body (a string), content_type,
--- persistent, headers = { k = v } } and wait for the broker's confirm
--- (on a confirming connection) for up to `timeout` seconds. Raises a
--- ConnectionError, a TimeoutError, or an AmqpError when the broker nacked it.
function Connection:publish(p, timeout)
    local n, strings = 0, {}
    if p.headers then
        for k, v in pairs(p.headers) do
            n = n + 1
            strings[2 * n - 1], strings[2 * n] = tostring(k), tostring(v)
        end
    end
    if n > hcap then
        hcap = math.max(n, 2 * hcap, 8)
        hkeys = ffi.new("const char *[?]", hcap)
        hvals = ffi.new("const char *[?]", hcap)
    end
    for i = 1, n do
        hkeys[i - 1], hvals[i - 1] = strings[2 * i - 1], strings[2 * i]
    end
    p.nheaders = n
    local rc
    if timeout and timeout > 0 then
        rc = runtime.await_timeout(timeout, start_publish, self, p)
    else
        rc = runtime.await(start_publish, self, p)
    end
    if rc == core.OK then return end
    if rc == core.DECLINED then
        error(amqp_error("AmqpError", format("amqp %s: the broker refused the message (nack)", self.where),
            self.where, "publish", self.client), 0)
    end
    if rc == core.ETIMEDOUT then
        -- (the connection's state is unknown: the pool discards it)
        local err = amqp_error("TimeoutError", format("amqp %s: no confirm from the broker within %gs",
            self.where, timeout), self.where, "publish", self.client)
        self:close()
        error(err, 0)
    end
    error(conn_error(self, rc, "publish"), 0)
end

--------------------------------------------------------------------------------
-- Deliveries

local len_cell = ffi.new("size_t[1]")
local klen_cell = ffi.new("size_t[1]")
local key_cell = ffi.new("const char *[1]")

local function field(d, which)
    local p = C.bp_amqp_delivery_field(d, which, len_cell)
    if p == nil then return nil end
    return ffi_string(p, len_cell[0])
end

--- The delivery as a table: body, delivery_tag (a number; exact below
--- 2^53), redelivered, exchange, routing_key, consumer_tag, content_type,
--- content_encoding, message_id, headers ({ key = text }). Frees it.
function M.take_delivery(d)
    local headers = {}
    for i = 0, C.bp_amqp_delivery_nheaders(d) - 1 do
        local v = C.bp_amqp_delivery_header(d, i, key_cell, klen_cell, len_cell)
        headers[ffi_string(key_cell[0], klen_cell[0])] = ffi_string(v, len_cell[0])
    end
    local t = {
        body = field(d, C.BP_AMQP_BODY) or "",
        delivery_tag = tonumber(C.bp_amqp_delivery_tag(d)),
        redelivered = C.bp_amqp_delivery_redelivered(d) ~= 0,
        exchange = field(d, C.BP_AMQP_EXCHANGE) or "",
        routing_key = field(d, C.BP_AMQP_ROUTING_KEY) or "",
        consumer_tag = field(d, C.BP_AMQP_CONSUMER_TAG) or "",
        content_type = field(d, C.BP_AMQP_CONTENT_TYPE),
        content_encoding = field(d, C.BP_AMQP_CONTENT_ENCODING),
        message_id = field(d, C.BP_AMQP_MESSAGE_ID),
        headers = headers,
    }
    C.bp_amqp_delivery_free(d)
    return t
end

local dout = ffi.new("bp_amqp_delivery_t *[1]")

local function start_next(waiter, conn)
    if conn.c == nil then return core.ECLOSED end
    conn.next_waiter = waiter
    local rc = C.bp_amqp_next(conn.c, waiter, dout)
    if rc == core.OK then conn.taken = dout[0] end
    return rc
end

--- The next delivery (a table, see take_delivery), waiting for one; nil
--- when the wait was cancelled (Connection:cancel_wait). Raises a
--- ConnectionError when the connection broke.
function Connection:next_delivery()
    while true do
        local rc = runtime.await(start_next, self)
        self.next_waiter = nil
        if rc == core.OK then
            local d = self.taken
            if d ~= nil then
                self.taken = nil
                return M.take_delivery(d)
            end
            -- (woken: one came; take it)
        elseif rc == core.ECANCELED then
            return nil
        else
            error(conn_error(self, rc, "consume"), 0)
        end
    end
end

--- End a next_delivery wait now (it returns nil).
function Connection:cancel_wait()
    local w = self.next_waiter
    if w then
        self.next_waiter = nil
        runtime.wake(w, core.ECANCELED)
    end
end

--- A delivery already here, without waiting (nil when none).
function Connection:take_queued()
    if self.c == nil or C.bp_amqp_queued(self.c) == 0 then return nil end
    local rc = C.bp_amqp_next(self.c, 0, dout)
    if rc ~= core.OK then return nil end
    return M.take_delivery(dout[0])
end

--- Acknowledge / reject a delivery of this connection: true, or false
--- with the reason when the connection is gone (the broker then
--- redelivers the message).
function Connection:ack(tag)
    if self.c == nil then return false, "closed" end
    if C.bp_amqp_ack(self.c, tag) ~= core.OK then return false, self:error() end
    return true
end

function Connection:reject(tag, requeue)
    if self.c == nil then return false, "closed" end
    if C.bp_amqp_reject(self.c, tag, requeue and 1 or 0) ~= core.OK then return false, self:error() end
    return true
end

--------------------------------------------------------------------------------
-- Serializers

local cjson = require("cjson")

local serializers = {}

--- Register a serializer { name, content_type (default
--- "application/x-{name}"), serialize(value) -> string,
--- deserialize(string) -> value } under its name (KombuSerializer and
--- register_serializer's roles).
function M.register_serializer(s)
    if type(s) ~= "table" or type(s.name) ~= "string" or type(s.serialize) ~= "function"
        or type(s.deserialize) ~= "function" then
        error("register_serializer: expected { name = , serialize = function, deserialize = function }", 2)
    end
    s.content_type = s.content_type or ("application/x-" .. s.name)
    serializers[s.name] = s
    serializers[s.content_type] = s
    return s
end

M.JSON = M.register_serializer({
    name = "json", content_type = "application/json",
    serialize = function(v) return cjson.encode(v) end,
    deserialize = function(s) return cjson.decode(s) end,
})
-- Bodies as they are (strings).
M.RAW = M.register_serializer({
    name = "raw", content_type = "application/octet-stream",
    serialize = function(v) return tostring(v) end,
    deserialize = function(s) return s end,
})
M.TEXT = M.register_serializer({
    name = "text", content_type = "text/plain",
    serialize = function(v) return tostring(v) end,
    deserialize = function(s) return s end,
})

--- The serializer registered under `name_or_type` (a name or a content type).
function M.serializer(name_or_type)
    return serializers[name_or_type]
end

--------------------------------------------------------------------------------
-- Configuration

-- The keys of connection_from_config.
local connection_spec = {
    hostname = config.String,
    virtual_host = config.Optional(config.String, nil),
    heartbeat = config.Optional(config.Timespan, 60),
    connect_timeout = config.Optional(config.Timespan, 10),
    credentials_secret = config.Optional(config.String, nil),
    ssl = config.Optional(config.Boolean, nil),
    ssl_ca_certs = config.Optional(config.String, nil),
    ssl_certfile = config.Optional(config.String, nil),
    ssl_keyfile = config.Optional(config.String, nil),
    ssl_cert_reqs = config.Optional(config.OneOf({ required = "required", none = "none" }), "required"),
    ssl_check_hostname = config.Optional(config.Boolean, true),
}

-- A file the TLS settings name must be readable now (a clear error at start-up).
local function readable(key, path)
    local f, err = io.open(path, "rb")
    if not f then error(config.ConfigurationError(key, "cannot read " .. tostring(err)), 0) end
    f:close()
end

--- { host, port, user, password, vhost, heartbeat, timeout } from the keys
--- under `prefix` (Baseplate.py's connection_from_config): hostname (an
--- amqp:// URL with credentials, or host[:port]), virtual_host,
--- heartbeat, connect_timeout, credentials_secret (the name of a
--- credential secret in `secrets`, a baseplate.lib.secrets store, whose
--- username and password are used instead of the hostname's, read at each
--- connect), and TLS's ssl, ssl_ca_certs, ssl_certfile, ssl_keyfile,
--- ssl_cert_reqs, ssl_check_hostname. `client` names it in errors.
function M.connection_from_config(app_config, prefix, client, secrets)
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, connection_spec)
    local ok, t = pcall(M.parse_url, cfg.hostname)
    if not ok then error(config.ConfigurationError(key_base .. ".hostname", t), 0) end
    if cfg.credentials_secret then
        if not secrets then
            error(config.ConfigurationError(key_base .. ".credentials_secret", "a secrets store is needed to use "
                .. "it (AmqpProducer({ secrets = store }), the consumer factory's opts.secrets, or "
                .. "connection_from_config's secrets argument)"), 0)
        end
        t.credentials_secret, t.secrets = cfg.credentials_secret, secrets
    end
    -- TLS: an amqps:// hostname or ssl = true (Kombu's ssl), with the keys
    -- of Python's ssl module (as Kombu's ssl options and redis' rediss://)
    if cfg.ssl == false and t.tls then
        error(config.ConfigurationError(key_base .. ".ssl", "false, but the hostname is an amqps:// URL"), 0)
    end
    t.tls = t.tls or cfg.ssl or nil
    local tls_keys = { "ssl_ca_certs", "ssl_certfile", "ssl_keyfile" }
    if t.tls then
        for _, k in ipairs(tls_keys) do
            if cfg[k] then readable(key_base .. "." .. k, cfg[k]) end
        end
        if cfg.ssl_keyfile and not cfg.ssl_certfile then
            error(config.ConfigurationError(key_base .. ".ssl_keyfile", "needs ssl_certfile"), 0)
        end
        t.tls_ca_certs, t.tls_certfile, t.tls_keyfile = cfg.ssl_ca_certs, cfg.ssl_certfile, cfg.ssl_keyfile
        t.tls_verify_peer = cfg.ssl_cert_reqs == "required"
        t.tls_verify_hostname = cfg.ssl_check_hostname
    else
        for _, k in ipairs(tls_keys) do
            if cfg[k] then
                error(config.ConfigurationError(key_base .. "." .. k, "TLS is off (an amqps:// hostname or "
                    .. key_base .. ".ssl = true turns it on)"), 0)
            end
        end
    end
    if cfg.virtual_host then t.vhost = cfg.virtual_host end
    if cfg.heartbeat < 0 or cfg.heartbeat > 65535 then
        error(config.ConfigurationError(key_base .. ".heartbeat", "must be 0 to 65535 seconds"), 0)
    end
    t.heartbeat = math.floor(cfg.heartbeat)
    t.timeout = cfg.connect_timeout
    t.where = (t.host:find(":", 1, true) and "[" .. t.host .. "]" or t.host) .. ":" .. t.port
    t.client = client or key_base
    return t
end

local exchange_spec = {
    exchange_name = config.Optional(config.String, ""),
    exchange_type = config.Optional(config.OneOf({ direct = "direct", topic = "topic", fanout = "fanout",
                                                   headers = "headers" }), "direct"),
}

--- { name, type } from exchange_name (default "": the default exchange)
--- and exchange_type (direct, topic, fanout, headers; default direct).
function M.exchange_from_config(app_config, prefix)
    local cfg = config.parse_config_at(app_config, prefix, exchange_spec)
    return { name = cfg.exchange_name, type = cfg.exchange_type }
end

--------------------------------------------------------------------------------
-- The producer

local function open_producer(target, exchange)
    local conn = M.connect(target)
    local ok, err = pcall(function()
        if exchange.name ~= "" then conn:declare_exchange(exchange.name, exchange.type, true, false) end
        conn:confirm_select()
    end)
    if not ok then
        conn:close()
        error(err, 0)
    end
    return conn
end

local function usable(conn)
    return not conn:broken()
end

local producer_spec = {
    max_connections = config.Optional(config.Integer, nil),
    pool_timeout = config.Optional(config.Timespan, 5),
    publish_timeout = config.Optional(config.Timespan, 10),
    persistent = config.Optional(config.Boolean, true),
    serializer = config.Optional(config.String, nil),
}

local Producer = {}
Producer.__index = Producer

local function publish_on(conn, p, timeout)
    return conn:publish(p, timeout)
end

-- The trace headers of the publish span (as the HTTP client sends them).
local function trace_headers(headers, span)
    local ti = span.trace_info
    headers["X-Trace"] = ti.trace_id
    headers["X-Span"] = ti.span_id
    if ti.parent_id then headers["X-Parent"] = ti.parent_id end
    if ti.sampled ~= nil then headers["X-Sampled"] = ti.sampled and "1" or "0" end
    if ti.flags then headers["X-Flags"] = format("%d", ti.flags) end
end

local function do_publish(span, self, p)
    if span then
        span:set_tag("kind", "producer")
        span:set_tag("amqp.exchange", p.exchange)
        span:set_tag("amqp.routing_key", p.routing_key)
        trace_headers(p.headers, span)
    end
    return self._factory.pool:with(publish_on, p, self._factory.publish_timeout)
end

--- Publish `body` (serialized by the producer's serializer, or
--- opts.serializer) with opts = { routing_key, headers = { k = v },
--- exchange (default: the configured one), persistent, content_type };
--- waits for the broker's confirm. A child span "{name}.publish".
function Producer:publish(body, opts)
    opts = opts or {}
    local f = self._factory
    local s = f.serializer
    if opts.serializer then
        s = type(opts.serializer) == "table" and opts.serializer or serializers[opts.serializer]
        if not s then error("publish: unknown serializer '" .. tostring(opts.serializer) .. "'", 2) end
    end
    local headers = {}
    if opts.headers then for k, v in pairs(opts.headers) do headers[k] = v end end
    local p = {
        exchange = opts.exchange or f.exchange.name,
        routing_key = opts.routing_key or "",
        body = s.serialize(body),
        content_type = opts.content_type or s.content_type,
        persistent = opts.persistent == nil and f.persistent or opts.persistent,
        headers = headers,
    }
    if type(p.body) ~= "string" then error("publish: the serializer returned " .. type(p.body), 2) end
    if self._span == nil then return do_publish(nil, self, p) end
    return self._span:make_child(self._name .. ".publish"):with(do_publish, self, p)
end

local function make_producer(name, span, factory)
    return setmetatable({ _name = name, _span = span, _factory = factory }, Producer)
end

--- A context factory for a connection target (connection_from_config),
--- an exchange (exchange_from_config) and opts { max_connections,
--- pool_timeout, publish_timeout, persistent, serializer }
--- (KombuProducerContextFactory's role).
function M.producer_context_factory(target, exchange, opts)
    opts = opts or {}
    local pool = Pool.new({
        name = target.client,
        size = opts.max_connections or 10,
        timeout = opts.pool_timeout or 5,
        connect = function() return open_producer(target, exchange) end,
        close = function(conn) conn:close() end,
        usable = usable,
    })
    return base.context_factory(pool, make_producer, {
        exchange = exchange, serializer = opts.serializer or M.JSON, publish_timeout = opts.publish_timeout or 10,
        persistent = opts.persistent ~= false,
    })
end

--- For configure_context: { foo = AmqpProducer() } reads foo.hostname,
--- foo.virtual_host, foo.exchange_name, foo.exchange_type and the rest
--- (docs/amqp.md), and puts a producer on each request as foo.
--- opts: { max_connections, serializer } (KombuProducer's arguments),
--- secrets (the secrets store of foo.credentials_secret).
function M.AmqpProducer(opts)
    opts = opts or {}
    return base.client_parser(function(key_path, raw, parser)
        local prefix = key_path .. "."
        local target = M.connection_from_config(raw, prefix, key_path, parser.secrets)
        local exchange = M.exchange_from_config(raw, prefix)
        local cfg = config.parse_config_at(raw, prefix, producer_spec)
        local s = opts.serializer
        if cfg.serializer then
            s = serializers[cfg.serializer]
            if not s then
                error(config.ConfigurationError(key_path .. ".serializer",
                    "unknown serializer '" .. cfg.serializer .. "'"), 0)
            end
        end
        local max = cfg.max_connections or opts.max_connections
        if max and max < 1 then
            error(config.ConfigurationError(key_path .. ".max_connections", "must be at least 1"), 0)
        end
        return M.producer_context_factory(target, exchange, {
            max_connections = max, pool_timeout = cfg.pool_timeout, publish_timeout = cfg.publish_timeout,
            persistent = cfg.persistent, serializer = s,
        })
    end, { secrets = opts.secrets })
end
M.KombuProducer = M.AmqpProducer

return M
