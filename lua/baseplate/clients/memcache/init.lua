-- memcached: non-blocking (memcached's text protocol on the event loop),
-- pooled and instrumented, as Baseplate.py's baseplate.clients.memcache.
--
--   local memcache = require("baseplate.clients.memcache")
--   local lib = require("baseplate.clients.memcache.lib")
--   bp:configure_context({ cache = memcache.MemcacheClient(
--       lib.make_dump_and_compress_fn(1000), lib.decompress_and_load) })
--   -- [app:main] cache.endpoint = localhost:11211
--   request.cache:set("k", { a = 1 }, 60)
--   request.cache:get("k")                 --> { a = 1 }
--   request.cache:get_many({ "k", "j" })   --> { k = { a = 1 } }
--
-- Every call is a child span "{name}.{command}" of the request's span.
-- Failures raise client errors (baseplate.clients.base): class
-- "ConnectionError", "TimeoutError" or "MemcacheError" (the server refused
-- the command, a key is not a memcached key, a value cannot be read).
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local Pool = require("baseplate.clients.pool")
local base = require("baseplate.clients.base")
local span_mod = require("baseplate.span")

ffi.cdef([[
typedef struct bp_memcache_conn_s bp_memcache_conn_t;
typedef struct {
  const char *key;
  size_t key_len;
  const char *data;
  size_t data_len;
  uint32_t flags;
  uint64_t cas;
  int reply;
} bp_memcache_value_t;
int bp_memcache_connect(const char *host, int port, const char *path, double connect_timeout,
                        size_t max_item_size, int waiter, bp_memcache_conn_t **out, char *err,
                        size_t errlen);
int bp_memcache_check_key(const char *key, size_t len, char *err, size_t errlen);
int bp_memcache_get(bp_memcache_conn_t *c, int gets, int nkeys, const char *const *keys,
                    const size_t *key_lens);
int bp_memcache_gat(bp_memcache_conn_t *c, int gats, long long exptime, int nkeys,
                    const char *const *keys, const size_t *key_lens);
void bp_memcache_set_noreply(bp_memcache_conn_t *c, int noreply);
int bp_memcache_store(bp_memcache_conn_t *c, int command, const char *key, size_t key_len,
                      uint32_t flags, long long exptime, uint64_t cas, const char *data, size_t len);
int bp_memcache_delete(bp_memcache_conn_t *c, const char *key, size_t key_len);
int bp_memcache_incr(bp_memcache_conn_t *c, int decr, const char *key, size_t key_len, uint64_t delta);
int bp_memcache_touch(bp_memcache_conn_t *c, const char *key, size_t key_len, long long exptime);
int bp_memcache_flush_all(bp_memcache_conn_t *c, long long delay);
int bp_memcache_stats(bp_memcache_conn_t *c, const char *args, size_t len, unsigned max_stats);
int bp_memcache_version(bp_memcache_conn_t *c);
int bp_memcache_cache_memlimit(bp_memcache_conn_t *c, long long megabytes);
int bp_memcache_send(bp_memcache_conn_t *c, double timeout, int waiter);
int bp_memcache_reply_count(const bp_memcache_conn_t *c);
int bp_memcache_reply(const bp_memcache_conn_t *c, int i, uint64_t *number, const char **text,
                      size_t *len);
int bp_memcache_value_count(const bp_memcache_conn_t *c);
int bp_memcache_value(const bp_memcache_conn_t *c, int i, bp_memcache_value_t *out);
const char *bp_memcache_error(const bp_memcache_conn_t *c);
int bp_memcache_broken(const bp_memcache_conn_t *c);
int bp_memcache_busy(const bp_memcache_conn_t *c);
size_t bp_memcache_buffered(const bp_memcache_conn_t *c);
void bp_memcache_close(bp_memcache_conn_t *c);
int bp_memcache_zlib_compress(const char *in, size_t len, int level, const char **out,
                              size_t *out_len, char *err, size_t errlen);
int bp_memcache_zlib_inflate(const char *in, size_t len, size_t max_out, const char **out,
                             size_t *out_len, char *err, size_t errlen);
]])

local C = core.C
local ffi_string = ffi.string
local type, tostring, tonumber, setmetatable, error, pcall, pairs = type, tostring, tonumber, setmetatable, error,
    pcall, pairs
local format, floor = string.format, math.floor

local M = {}

-- memcache.h's constants (tests/lua/test-ffi-decls.lua checks them)
local SET, ADD, REPLACE, APPEND, PREPEND, CAS = 1, 2, 3, 4, 5, 6
M.SET, M.ADD, M.REPLACE, M.APPEND, M.PREPEND, M.CAS = SET, ADD, REPLACE, APPEND, PREPEND, CAS
local STORED, NOT_STORED, EXISTS, NOT_FOUND, DELETED, TOUCHED, OK, END, NUMBER = 1, 2, 3, 4, 5, 6, 7, 8, 9
local ERROR, CLIENT_ERROR, SERVER_ERROR, VERSION, NOREPLY = 10, 11, 12, 13, 14
M.REPLY_STORED, M.REPLY_NOT_STORED, M.REPLY_EXISTS, M.REPLY_NOT_FOUND = STORED, NOT_STORED, EXISTS, NOT_FOUND
M.REPLY_DELETED, M.REPLY_TOUCHED, M.REPLY_OK, M.REPLY_END, M.REPLY_NUMBER = DELETED, TOUCHED, OK, END, NUMBER
M.REPLY_ERROR, M.REPLY_CLIENT_ERROR, M.REPLY_SERVER_ERROR = ERROR, CLIENT_ERROR, SERVER_ERROR
M.REPLY_VERSION, M.REPLY_NOREPLY = VERSION, NOREPLY
M.MAX_KEY_LENGTH = 250
M.DEFAULT_MAX_ITEM_SIZE = 1024 * 1024

-- A get asks at most this many keys; get_many sends more as several gets
-- in one write.
local KEYS_PER_GET = 100

--------------------------------------------------------------------------------
-- Errors

local ClientError = base.ClientError
M.MemcacheError = ClientError

local function client_error(class, message, client, endpoint, command, connection_ok)
    return setmetatable({ class = class, message = message, client = client, endpoint = endpoint,
        command = command, connection_ok = connection_ok }, ClientError)
end

--------------------------------------------------------------------------------
-- Connections

local uint64_t = ffi.typeof("uint64_t")
local TWO53 = 2 ^ 53
local value_cell = ffi.new("bp_memcache_value_t")
local number_cell = ffi.new("uint64_t[1]")
local text_cell = ffi.new("const char *[1]")
local len_cell = ffi.new("size_t[1]")
local keyerr = ffi.new("char[128]")

-- A 64-bit unsigned number from C: a Lua number when exact, else uint64_t.
local function u64(v)
    if v < TWO53 then return tonumber(v) end
    return uint64_t(v)
end

local function start_connect(waiter, cfg, out)
    local rc = C.bp_memcache_connect(cfg.host, cfg.port or 0, cfg.path, cfg.connect_timeout, cfg.max_item_size,
        waiter, out, core.errbuf, core.errbuf_size)
    return rc
end

local OK_RC = core.OK

local function start_send(waiter, conn, timeout)
    local rc = C.bp_memcache_send(conn.c, timeout, waiter)
    return rc
end

function M.close_conn(conn)
    if conn.c ~= nil then
        C.bp_memcache_close(ffi.gc(conn.c, nil))
        conn.c = nil
    end
end

local function status_error(conn, rc, what, name)
    if rc == core.ETIMEDOUT then
        return client_error("TimeoutError", format("memcache %s (%s): %s timed out after %gs", name or "?",
            conn.where, what, conn.timeout), name, conn.where, what)
    end
    local detail = conn.c ~= nil and ffi_string(C.bp_memcache_error(conn.c)) or core.strerror(rc)
    if detail == "" then detail = core.strerror(rc) end
    if detail:sub(1, #conn.where + 2) == conn.where .. ": " then detail = detail:sub(#conn.where + 3) end
    return client_error("ConnectionError", format("memcache %s (%s): %s failed: %s", name or "?", conn.where,
        what, detail), name, conn.where, what)
end

local function open(cfg)
    local out = ffi.new("bp_memcache_conn_t *[1]")
    local rc = runtime.await(start_connect, cfg, out)
    local conn = { c = out[0], timeout = cfg.timeout, where = cfg.where }
    if conn.c == nil then
        error(client_error("ConnectionError", format("memcache %s (%s): %s", cfg.name, cfg.where, core.errmsg()),
            cfg.name, cfg.where, "connect"), 0)
    end
    ffi.gc(conn.c, C.bp_memcache_close)
    if rc ~= core.OK then
        local err = status_error(conn, rc, "connect", cfg.name)
        M.close_conn(conn)
        error(err, 0)
    end
    return conn
end

local function usable(conn)
    return conn.c ~= nil and C.bp_memcache_broken(conn.c) == 0
end

--------------------------------------------------------------------------------
-- Configuration

local spec = {
    endpoint = config.Endpoint,
    max_pool_size = config.Optional(config.Integer, 2147483648),
    connect_timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    no_delay = config.Optional(config.Boolean, true),
    pool_timeout = config.Optional(config.NonNegative(config.Timespan), 5),
    max_item_size = config.Optional(config.Integer, M.DEFAULT_MAX_ITEM_SIZE),
    default_noreply = config.Optional(config.Boolean, false),
}

--- A connection pool from the keys under `prefix` ("memcache." by default):
--- endpoint (required: host:port, [v6]:port or a UNIX socket's path),
--- max_pool_size, connect_timeout, timeout (none by default), no_delay
--- (accepted; sockets always have TCP_NODELAY), and this client's own
--- pool_timeout (how long a call waits for a free connection, 5 seconds),
--- max_item_size (the largest value read or written, 1 MB as memcached's
--- default) and default_noreply (false: the noreply of calls that do not
--- say, as pymemcache's default_noreply, which is true there). serializer(key, value) -> data, flags and
--- deserializer(key, data, flags) -> value are kept with the pool.
function M.pool_from_config(app_config, prefix, serializer, deserializer, name)
    prefix = prefix or "memcache."
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, spec)
    if cfg.max_pool_size < 1 then
        error(config.ConfigurationError(key_base .. ".max_pool_size", "must be at least 1"), 0)
    end
    if cfg.max_item_size < 1 then
        error(config.ConfigurationError(key_base .. ".max_item_size", "must be at least 1"), 0)
    end
    local e = cfg.endpoint
    local target = {
        name = name or key_base,
        host = e.family ~= "AF_UNIX" and config.socket_host(e.host) or nil,
        port = e.port,
        path = e.family == "AF_UNIX" and e.path or nil,
        connect_timeout = cfg.connect_timeout or 0,
        timeout = cfg.timeout or 0,
        max_item_size = cfg.max_item_size,
        where = tostring(e),
    }
    local pool = Pool.new({
        name = target.name,
        size = cfg.max_pool_size,
        timeout = cfg.pool_timeout,
        connect = function() return open(target) end,
        close = M.close_conn,
        usable = usable,
    })
    local lib = require("baseplate.clients.memcache.lib")
    pool.endpoint = target.where
    pool.default_noreply = cfg.default_noreply
    pool.serializer = serializer or lib.raw_serializer
    pool.deserializer = deserializer or lib.raw_deserializer
    return pool
end

--------------------------------------------------------------------------------
-- Sending a batch

-- The keys of a get, shared by every call (bp_memcache_get copies them).
local keys_cap = 0
local keys_arr, key_lens

local function reserve_keys(n)
    if n > keys_cap then
        keys_cap = math.max(n, 2 * keys_cap, 16)
        keys_arr = ffi.new("const char *[?]", keys_cap)
        key_lens = ffi.new("size_t[?]", keys_cap)
    end
end
reserve_keys(16)

local function refused(conn, req)
    -- a refused command: nothing was sent, the connection is fine
    return client_error("MemcacheError", format("memcache %s: %s: %s", req.client, req.command,
        ffi_string(C.bp_memcache_error(conn.c))), req.client, conn.where, req.command, true)
end

local function error_reply(conn, req, kind, text)
    local msg = kind == ERROR and "ERROR (the server does not know the command)"
        or (kind == CLIENT_ERROR and "CLIENT_ERROR " or "SERVER_ERROR ") .. text
    -- ERROR and CLIENT_ERROR: the stream may be out of step, the connection goes
    return client_error("MemcacheError", format("memcache %s (%s): %s: %s", req.client, conn.where, req.command,
        msg), req.client, conn.where, req.command, kind == SERVER_ERROR)
end

-- Send what is queued on conn and wait for every reply; raises a connection
-- failure.
local function send(conn, req)
    local ok, rc = pcall(runtime.await, start_send, conn, conn.timeout)
    if not ok then error(rc, 0) end
    if rc ~= core.OK then error(status_error(conn, rc, req.command, req.client), 0) end
end

-- Queue a request's commands on conn (req.queue), send them, and read every
-- reply: its kind, number or text per command (replies.number_at[i] is
-- true for a number), and the values
-- { key, data, flags, cas }. Raises connection failures.
local function exchange(conn, req)
    local c = conn.c
    local rc = req.queue(c, req)
    if rc ~= core.OK then error(refused(conn, req), 0) end
    send(conn, req)
    local n = C.bp_memcache_reply_count(c)
    local replies, failure = {}, nil
    for i = 1, n do
        local kind = C.bp_memcache_reply(c, i - 1, number_cell, text_cell, len_cell)
        if kind == NUMBER then
            replies[i] = u64(number_cell[0])
            -- (a counter of 4 is not NOT_FOUND: arith asks which replies are numbers)
            local at = replies.number_at or {}
            at[i] = true
            replies.number_at = at
        elseif kind == VERSION then
            replies[i] = ffi_string(text_cell[0], len_cell[0])
        elseif kind >= ERROR and kind <= SERVER_ERROR then
            failure = failure or error_reply(conn, req, kind, kind ~= ERROR and ffi_string(text_cell[0], len_cell[0]))
            replies[i] = kind
        else
            replies[i] = kind
        end
    end
    if failure then error(failure, 0) end
    local nv = C.bp_memcache_value_count(c)
    local values
    if nv > 0 then
        values = {}
        local v = value_cell
        for i = 1, nv do
            C.bp_memcache_value(c, i - 1, v)
            values[i] = { ffi_string(v.key, v.key_len), ffi_string(v.data, v.data_len), v.flags,
                req.gets and u64(v.cas) or nil }
        end
    end
    return replies, values
end

local function pool_timeout(pool, req, err)
    if type(err) == "string" and err:find("no connection available", 1, true) then
        return client_error("TimeoutError", format("memcache %s (%s): %s: %s", req.client, pool.endpoint,
            req.command, err), req.client, pool.endpoint, req.command)
    end
    return err
end

-- Run req on a pooled connection; a pool that has no connection in time is
-- a TimeoutError.
local function run(pool, req)
    local ok, replies, values = pcall(pool.with, pool, exchange, req)
    if ok then return replies, values end
    error(pool_timeout(pool, req, replies), 0)
end

-- "k1,k2,…" cut at 100 characters, as Baseplate.py's make_keys_str.
local function keys_str(keys)
    local s = table.concat(keys, ",", 1, math.min(#keys, 101))
    if #s > 100 then s = s:sub(1, 100) .. "..." end
    return s
end

local function in_span(span, pool, req)
    span:set_tag("method", req.command)
    if req.key then span:set_tag("key", req.key) end
    if req.keys then
        span:set_tag("key_count", #req.keys)
        span:set_tag("keys", keys_str(req.keys))
    end
    if req.expire then span:set_tag("expire", req.expire) end
    if req.noreply ~= nil then span:set_tag("noreply", req.noreply) end
    if req.cas_tag then span:set_tag("cas", req.cas_tag) end
    if req.delay then span:set_tag("delay", req.delay) end
    return run(pool, req)
end

-- "{name}.{command}", made once per client name and command
local span_names = setmetatable({}, { __index = function(t, name)
    local per = setmetatable({}, { __index = function(u, command)
        local s = name .. "." .. command
        u[command] = s
        return s
    end })
    t[name] = per
    return per
end })

-- Prometheus: Baseplate.py's memcached_client_* family, labelled by the
-- server's address and the command (made once per pair).
local memcached_labels = span_mod.label_memo()
local function with_family(child, pool, command)
    if not span_mod.prometheus_on() then return child end
    local address = pool.endpoint or ""
    child:set_metric_family("memcached_client", memcached_labels(address .. "\0" .. command,
        "memcached_address", address, "memcached_command", command))
    return child
end

local function call(self, req)
    req.client = self._name
    local span = self._span
    if span == nil then return run(self._pool, req) end
    return with_family(span:make_child(span_names[self._name][req.command]), self._pool, req.command)
        :with(in_span, self._pool, req)
end

--------------------------------------------------------------------------------
-- Checking arguments

local function bad_key(self, command, key, why)
    return client_error("MemcacheError", format("memcache %s: %s: invalid key %q: %s", self._name, command,
        #key > 60 and key:sub(1, 60) .. "..." or key, why), self._name, self._pool.endpoint, command, true)
end

local function check_key(self, command, key)
    if type(key) ~= "string" then
        error(client_error("MemcacheError", format("memcache %s: %s: a key is a string, not a %s", self._name,
            command, type(key)), self._name, self._pool.endpoint, command, true), 3)
    end
    if C.bp_memcache_check_key(key, #key, keyerr, 128) ~= core.OK then
        error(bad_key(self, command, key, ffi_string(keyerr)), 3)
    end
    return key
end

local function check_keys(self, command, keys)
    if type(keys) ~= "table" then
        error(format("memcache %s: %s: expected a list of keys", self._name, command), 3)
    end
    for i = 1, #keys do check_key(self, command, keys[i]) end
    return keys
end

local function check_int(self, command, what, v, min)
    if type(v) ~= "number" or v ~= floor(v) or v < (min or -2 ^ 53) or v >= 2 ^ 53 then
        error(format("memcache %s: %s: %s must be an integer%s, not %s", self._name, command, what,
            min and " >= " .. min or "", tostring(v)), 3)
    end
    return v
end

-- noreply as given, or the pool's default (for the calls whose default is
-- pymemcache's default_noreply)
local function check_noreply(self, command, v, default)
    if v == nil then
        if default == nil then return self._pool.default_noreply == true end
        return default
    end
    if type(v) ~= "boolean" then
        error(format("memcache %s: %s: noreply must be a boolean, not %s", self._name, command, tostring(v)), 3)
    end
    return v
end

local function to_u64(self, command, what, v)
    if type(v) == "number" and v >= 0 and v == floor(v) and v < 2 ^ 64 then return uint64_t(v) end
    if type(v) == "string" and v:match("^%d+$") and #v <= 20 then
        local n = require("baseplate.clients.memcache.lib").parse_int(v)
        if n ~= nil then return uint64_t(n) end
    end
    if type(v) == "cdata" then
        local ok, n = pcall(uint64_t, v)
        if ok and not (ffi.istype("int64_t", v) and v < 0) then return n end
    end
    error(format("memcache %s: %s: %s must be an unsigned 64-bit integer, not %s", self._name, command, what,
        tostring(v)), 3)
end

local function serialize(self, command, key, value)
    local ok, data, flags = pcall(self._pool.serializer, key, value)
    if not ok then
        if type(data) == "table" then error(data, 3) end
        error(client_error("MemcacheError", format("memcache %s: %s: %s", self._name, command, tostring(data)),
            self._name, self._pool.endpoint, command, true), 3)
    end
    if type(data) ~= "string" or type(flags) ~= "number"
        or flags < 0 or flags > 4294967295 or flags ~= floor(flags) then
        error(format("memcache %s: %s: the serializer must return a string and flags (0..2^32-1)", self._name,
            command), 3)
    end
    return data, flags
end

local function deserialize(self, command, key, data, flags)
    local ok, v = pcall(self._pool.deserializer, key, data, flags)
    if not ok then
        if type(v) == "table" then error(v, 0) end
        error(client_error("MemcacheError", format("memcache %s (%s): %s: %s", self._name, self._pool.endpoint,
            command, tostring(v)), self._name, self._pool.endpoint, command, true), 0)
    end
    return v
end

--------------------------------------------------------------------------------
-- The commands

local function queue_get(c, req)
    local keys, gets = req.keys, req.gets and 1 or 0
    local n = #keys
    local i = 1
    while i <= n do
        local m = math.min(KEYS_PER_GET, n - i + 1)
        reserve_keys(m)
        for j = 0, m - 1 do
            local k = keys[i + j]
            keys_arr[j] = k
            key_lens[j] = #k
        end
        local rc
        if req.gat then
            rc = C.bp_memcache_gat(c, gets, req.expire, m, keys_arr, key_lens)
        else
            rc = C.bp_memcache_get(c, gets, m, keys_arr, key_lens)
        end
        if rc ~= core.OK then return rc end
        i = i + m
    end
    return core.OK
end

local function noreply_mode(c, req)
    if req.noreply then C.bp_memcache_set_noreply(c, 1) end
end

local function queue_store(c, req)
    noreply_mode(c, req)
    local items = req.items
    for i = 1, #items do
        local it = items[i]
        local rc = C.bp_memcache_store(c, it[1], it[2], #it[2], it[4], req.expire, it[5] or 0, it[3], #it[3])
        if rc ~= core.OK then return rc end
    end
    return core.OK
end

local function queue_delete(c, req)
    noreply_mode(c, req)
    local keys = req.keys
    for i = 1, #keys do
        local rc = C.bp_memcache_delete(c, keys[i], #keys[i])
        if rc ~= core.OK then return rc end
    end
    return core.OK
end

local function queue_incr(c, req)
    noreply_mode(c, req)
    local rc = C.bp_memcache_incr(c, req.decr, req.key, #req.key, req.delta)
    return rc
end

local function queue_touch(c, req)
    noreply_mode(c, req)
    local rc = C.bp_memcache_touch(c, req.key, #req.key, req.expire)
    return rc
end

local function queue_flush(c, req)
    noreply_mode(c, req)
    local rc = C.bp_memcache_flush_all(c, req.delay)
    return rc
end

local function queue_stats(c, req)
    local rc = C.bp_memcache_stats(c, req.args, #req.args, 0)
    return rc
end

local function queue_version(c)
    local rc = C.bp_memcache_version(c)
    return rc
end

local function queue_memlimit(c, req)
    local rc = C.bp_memcache_cache_memlimit(c, req.megabytes)
    return rc
end

local Monitored = {}
Monitored.__index = Monitored
M.MonitoredMemcacheConnection = Monitored

function M.monitored(name, span, pool)
    return setmetatable({ _name = name, _span = span, _pool = pool }, Monitored)
end

-- Coalescing: the gets of one key (get, gets, gat, gats) that coroutines
-- make in the same loop iteration go together, in one write on one
-- connection, and their replies come in one read, instead of a write and a
-- read (two system calls, and a wake-up of memcached) per call. The first
-- caller leads a group: it waits until the loop's next turn, while the
-- others called in this turn join, then sends every member's command,
-- reads the replies and wakes the members, each with its own result or
-- error. A failure of the connection fails every member; an error reply
-- only its own call. A group has at most 16 members: then several groups
-- are in flight on several connections, and the client works while
-- memcached answers (one group of everyone would leave both sides idle in
-- turn: bench/README.md).
local GROUP_MAX = 16

local function start_follow(id, g, i)
    g.ids[i] = id
    return core.AGAIN
end

local function start_turn(id)
    local rc = C.bp_sleep(0, id)
    return rc
end

-- Queue every member's get on one connection, send, read: results (or
-- errors) into the group. Raises nothing (and is not run under a pcall,
-- whose frame a trace cannot return into).
local function run_group(pool, g)
    local n, reqs, keys = g.n, g.reqs, g.keys
    local got, conn, since = pcall(pool.checkout, pool)
    if not got then
        for i = 1, n do g.errs[i] = pool_timeout(pool, reqs[i], conn) end
        return
    end
    local c = conn.c
    for i = 1, n do
        local r, k = reqs[i], keys[i]
        keys_arr[0] = k
        key_lens[0] = #k
        local rc
        if r.gat then
            rc = C.bp_memcache_gat(c, r.gets and 1 or 0, r.expire, 1, keys_arr, key_lens)
        else
            rc = C.bp_memcache_get(c, r.gets and 1 or 0, 1, keys_arr, key_lens)
        end
        if rc ~= OK_RC then -- (keys were checked: only out of memory)
            local err = refused(conn, r)
            for j = 1, n do g.errs[j] = err end
            pool:checkin(conn, false, since)
            return
        end
    end
    local ok, rc = pcall(runtime.await, start_send, conn, conn.timeout)
    if not ok or rc ~= OK_RC then
        for i = 1, n do
            g.errs[i] = ok and status_error(conn, rc, reqs[i].command, reqs[i].client) or rc
        end
        pool:checkin(conn, true, since)
        return
    end
    local discard = false
    for i = 1, n do
        local kind = C.bp_memcache_reply(c, i - 1, nil, text_cell, len_cell)
        if kind ~= END then
            g.errs[i] = error_reply(conn, reqs[i], kind, kind ~= ERROR and ffi_string(text_cell[0], len_cell[0]))
            if kind ~= SERVER_ERROR then discard = true end
        end
    end
    local v = value_cell
    for j = 0, C.bp_memcache_value_count(c) - 1 do
        C.bp_memcache_value(c, j, v)
        local i = v.reply + 1
        local k = keys[i]
        if v.key_len == #k and ffi_string(v.key, v.key_len) == k then
            g.data[i], g.flags[i] = ffi_string(v.data, v.data_len), v.flags
            if reqs[i].gets then g.cas[i] = u64(v.cas) end
        end
    end
    pool:checkin(conn, discard, since)
end

-- A member's data, flags, CAS unique, and its error (raised by the caller:
-- these functions raise nothing, and run under no pcall, whose frame a
-- trace cannot return into).
local function member_result(g, i)
    return g.data[i], g.flags[i], g.cas[i], g.errs[i]
end

local function get_grouped(pool, req, key)
    local g = pool.mc_group
    if g ~= nil and g.n < GROUP_MAX then -- join
        local i = g.n + 1
        g.n = i
        g.reqs[i], g.keys[i] = req, key
        local ok, rc = pcall(runtime.await, start_follow, g, i)
        if not ok then return nil, nil, nil, rc end
        if rc ~= OK_RC then -- (interrupted: the group goes on without us)
            return nil, nil, nil, status_error({ where = pool.endpoint, c = nil, timeout = 0 }, rc, req.command,
                req.client)
        end
        local data, flags, cas, err = member_result(g, i)
        return data, flags, cas, err
    end
    g = { n = 1, reqs = { req }, keys = { key }, ids = {}, data = {}, flags = {}, cas = {}, errs = {} }
    pool.mc_group = g
    -- the others join meanwhile; whatever wakes it, the group goes
    local waited, why = pcall(runtime.await, start_turn)
    if pool.mc_group == g then pool.mc_group = nil end
    if not waited then -- (cannot wait here: nobody could have joined)
        return nil, nil, nil, why
    end
    run_group(pool, g)
    for i = 2, g.n do runtime.wake(g.ids[i], OK_RC) end
    local data, flags, cas, err = member_result(g, 1)
    return data, flags, cas, err
end

-- The data and flags of key (and its CAS unique for gets), or nil.
local function fetch1(self, command, key, gets, gat, expire)
    local pool = self._pool
    local req = { command = command, client = self._name, gets = gets, gat = gat, expire = expire }
    local span = self._span
    if span == nil then
        local data, flags, cas, err = get_grouped(pool, req, key)
        if err ~= nil then error(err, 0) end
        return data, flags, cas
    end
    -- (Span:with's work, without its table of results or a pcall)
    local child = with_family(span:make_child(span_names[self._name][command]), pool, command)
    child:start()
    child:set_tag("method", command)
    child:set_tag("key", key)
    if expire then child:set_tag("expire", expire) end
    local data, flags, cas, err = get_grouped(pool, req, key)
    child:finish(err)
    if err ~= nil then error(err, 0) end
    return data, flags, cas
end

--- The value of key, or `default` when there is none.
function Monitored:get(key, default)
    check_key(self, "get", key)
    local data, flags = fetch1(self, "get", key)
    if data == nil then return default end
    return deserialize(self, "get", key, data, flags)
end

--- The value of key and its CAS unique (for cas()), or default and
--- cas_default when there is none.
function Monitored:gets(key, default, cas_default)
    check_key(self, "gets", key)
    local data, flags, cas = fetch1(self, "gets", key, true)
    if data == nil then return default, cas_default end
    return deserialize(self, "gets", key, data, flags), cas
end

--- get and touch: the value of key, whose expiry becomes `expire`, or
--- `default` when there is none.
function Monitored:gat(key, expire, default)
    check_key(self, "gat", key)
    expire = check_int(self, "gat", "expire", expire or 0)
    local data, flags = fetch1(self, "gat", key, false, true, expire)
    if data == nil then return default end
    return deserialize(self, "gat", key, data, flags)
end

--- gets and touch: the value of key and its CAS unique, its expiry becoming
--- `expire`; or default and cas_default.
function Monitored:gats(key, expire, default, cas_default)
    check_key(self, "gats", key)
    expire = check_int(self, "gats", "expire", expire or 0)
    local data, flags, cas = fetch1(self, "gats", key, true, true, expire)
    if data == nil then return default, cas_default end
    return deserialize(self, "gats", key, data, flags), cas
end

-- The values of several keys (only keys asked for).
local function fetch(self, command, keys, gets)
    local _, values = call(self, { command = command, queue = queue_get, keys = keys, gets = gets })
    return values
end

local function many(self, command, keys, gets)
    check_keys(self, command, keys)
    local out = {}
    if #keys == 0 then return out end
    local asked = {}
    for i = 1, #keys do asked[keys[i]] = true end
    local values = fetch(self, command, keys, gets)
    for i = 1, values and #values or 0 do
        local v = values[i]
        if asked[v[1]] then
            local value = deserialize(self, command, v[1], v[2], v[3])
            if gets then out[v[1]] = { value, v[4] } else out[v[1]] = value end
        end
    end
    return out
end

--- { [key] = value } of the keys that have one (one round trip).
function Monitored:get_many(keys)
    return many(self, "get_many", keys, false)
end

--- { [key] = { value, cas } } of the keys that have one.
function Monitored:gets_many(keys)
    return many(self, "gets_many", keys, true)
end

local function store(self, command, op, key, value, expire, noreply, cas)
    check_key(self, command, key)
    expire = check_int(self, command, "expire", expire or 0)
    noreply = check_noreply(self, command, noreply, op == CAS and false or nil)
    local data, flags = serialize(self, command, key, value)
    local replies = call(self, { command = command, queue = queue_store, expire = expire, key = key,
        noreply = noreply, cas_tag = cas and tostring(cas):gsub("ULL$", "") or nil,
        items = { { op, key, data, flags, cas } } })
    return replies[1]
end

--- Store value under key (expire: seconds, 0 for never): true.
function Monitored:set(key, value, expire, noreply)
    local r = store(self, "set", SET, key, value, expire, noreply)
    return r == STORED or r == NOREPLY
end

--- Store when key has no value: whether it was stored (true with noreply).
function Monitored:add(key, value, expire, noreply)
    local r = store(self, "add", ADD, key, value, expire, noreply)
    return r == STORED or r == NOREPLY
end

--- Store when key has a value: whether it was stored (true with noreply).
function Monitored:replace(key, value, expire, noreply)
    local r = store(self, "replace", REPLACE, key, value, expire, noreply)
    return r == STORED or r == NOREPLY
end

--- Add the (serialized) value's bytes after key's: whether key had a value.
function Monitored:append(key, value, expire, noreply)
    local r = store(self, "append", APPEND, key, value, expire, noreply)
    return r == STORED or r == NOREPLY
end

--- Add the (serialized) value's bytes before key's: whether key had a value.
function Monitored:prepend(key, value, expire, noreply)
    local r = store(self, "prepend", PREPEND, key, value, expire, noreply)
    return r == STORED or r == NOREPLY
end

--- Store when key's CAS unique is still `cas` (from gets): true; false when
--- someone stored since; nil when key has no value. true with noreply.
function Monitored:cas(key, value, cas, expire, noreply)
    local u = to_u64(self, "cas", "cas", cas)
    local r = store(self, "cas", CAS, key, value, expire, noreply, u)
    if r == STORED or r == NOREPLY then return true end
    if r == EXISTS then return false end
    return nil
end

--- Store every key → value of `values` in one round trip; returns the list
--- of keys that were not stored (empty with noreply).
function Monitored:set_many(values, expire, noreply)
    if type(values) ~= "table" then error(format("memcache %s: set_many: expected a table", self._name), 2) end
    expire = check_int(self, "set_many", "expire", expire or 0)
    noreply = check_noreply(self, "set_many", noreply)
    local items, keys = {}, {}
    for k, v in pairs(values) do
        check_key(self, "set_many", k)
        local data, flags = serialize(self, "set_many", k, v)
        items[#items + 1] = { SET, k, data, flags }
        keys[#keys + 1] = k
    end
    if #items == 0 then return {} end
    local replies = call(self, { command = "set_many", queue = queue_store, expire = expire, items = items,
        keys = keys, noreply = noreply })
    local failed = {}
    for i = 1, #items do
        if replies[i] ~= STORED and replies[i] ~= NOREPLY then failed[#failed + 1] = items[i][2] end
    end
    return failed
end

--- Remove key's value: whether it had one (true with noreply).
function Monitored:delete(key, noreply)
    check_key(self, "delete", key)
    noreply = check_noreply(self, "delete", noreply)
    local replies = call(self, { command = "delete", queue = queue_delete, keys = { key }, key = key,
        noreply = noreply, single = true })
    return replies[1] == DELETED or replies[1] == NOREPLY
end

--- Remove the values of the keys (one round trip): true.
function Monitored:delete_many(keys, noreply)
    check_keys(self, "delete_many", keys)
    noreply = check_noreply(self, "delete_many", noreply)
    if #keys == 0 then return true end
    call(self, { command = "delete_many", queue = queue_delete, keys = keys, noreply = noreply })
    return true
end

local function arith(self, command, decr, key, value, noreply)
    check_key(self, command, key)
    local delta = to_u64(self, command, "the value", value == nil and 1 or value)
    noreply = check_noreply(self, command, noreply, false)
    local replies = call(self, { command = command, queue = queue_incr, key = key, decr = decr, delta = delta,
        noreply = noreply })
    if not (replies.number_at and replies.number_at[1]) then return nil end -- NOT_FOUND, NOREPLY
    return replies[1]
end

--- Add value (default 1) to key's number: the new number, or nil when key
--- has no value (always nil with noreply). memcached counts in unsigned 64
--- bits (wrapping).
function Monitored:incr(key, value, noreply)
    return arith(self, "incr", 0, key, value, noreply)
end

--- Subtract value (default 1) from key's number, stopping at 0: the new
--- number, or nil when key has no value (always nil with noreply).
function Monitored:decr(key, value, noreply)
    return arith(self, "decr", 1, key, value, noreply)
end

--- Set key's expiry: whether it had a value (true with noreply).
function Monitored:touch(key, expire, noreply)
    check_key(self, "touch", key)
    expire = check_int(self, "touch", "expire", expire or 0)
    noreply = check_noreply(self, "touch", noreply)
    local replies = call(self, { command = "touch", queue = queue_touch, key = key, expire = expire,
        noreply = noreply })
    return replies[1] == TOUCHED or replies[1] == NOREPLY
end

--- Drop every value (after `delay` seconds): true.
function Monitored:flush_all(delay, noreply)
    delay = check_int(self, "flush_all", "delay", delay or 0, 0)
    noreply = check_noreply(self, "flush_all", noreply)
    call(self, { command = "flush_all", queue = queue_flush, delay = delay, noreply = noreply })
    return true
end

-- stats values as pymemcache converts them: numbers, except these
local STAT_STRING = { version = true, inter = true, stat_key_prefix = true, libevent = true }
local STAT_FLOAT = { rusage_user = true, rusage_system = true, growth_factor = true }
local STAT_BOOL = { hash_is_expanding = true, slab_reassign_running = true, detail_enabled = true,
    cas_enabled = true, maxconns_fast = true, slab_reassign = true, slab_automove = true }

local function stat_value(name, v)
    if STAT_STRING[name] then return v end
    if STAT_BOOL[name] then
        if v == "1" or v == "yes" or v == "true" then return true end
        if v == "0" or v == "no" or v == "false" then return false end
        return v
    end
    if name == "umask" then return tonumber(v, 16) or v end
    if STAT_FLOAT[name] then return tonumber(v) or v end
    if v:match("^%-?%d+$") then
        local n = tonumber(v)
        if n and math.abs(n) < TWO53 then return n end
        local u = require("baseplate.clients.memcache.lib").parse_int(v)
        if u ~= nil then return u end
    end
    return v
end

--- The server's statistics: { name = value } (numbers where they are
--- numbers, as pymemcache's stats). Arguments are passed on: stats("items"),
--- stats("slabs"), stats("settings"); stats("reset") returns {}.
function Monitored:stats(...)
    local args = table.concat({ ... }, " ")
    local _, values = call(self, { command = "stats", queue = queue_stats, args = args })
    local out = {}
    for i = 1, values and #values or 0 do
        local v = values[i]
        out[v[1]] = stat_value(v[1], v[2])
    end
    return out
end

--- The server's version, as it says it ("1.6.18").
function Monitored:version()
    local replies = call(self, { command = "version", queue = queue_version })
    return replies[1]
end

--- The server's memory limit becomes `megabytes`: true.
function Monitored:cache_memlimit(megabytes)
    megabytes = check_int(self, "cache_memlimit", "megabytes", megabytes, 0)
    call(self, { command = "cache_memlimit", queue = queue_memlimit, megabytes = megabytes })
    return true
end

--- Close the pool's idle connections (as pymemcache's PooledClient.close;
--- connections in use go on); the next call opens a new one.
function Monitored:close()
    local span = self._span
    if span == nil then return self._pool:close() end
    span:make_child(self._name .. ".close"):with(function(sp)
        sp:set_tag("method", "close")
        self._pool:close()
    end)
end

--- As close(): memcached's quit ends a connection, and so does closing it.
function Monitored:quit()
    local span = self._span
    if span == nil then return self._pool:close() end
    span:make_child(self._name .. ".quit"):with(function(sp)
        sp:set_tag("method", "quit")
        self._pool:close()
    end)
end

--------------------------------------------------------------------------------
-- The context factory and its config parser

M.MemcacheContextFactory = base.Factory

local function make_monitored(name, span, factory)
    return M.monitored(name, span, factory.pool)
end

function M.context_factory(pool, name)
    return base.context_factory(pool, make_monitored, { name = name, pool_gauges = { "open_and_available" },
        prom_pool = "memcached" })
end

local function build(key_path, raw, parser)
    return M.context_factory(M.pool_from_config(raw, key_path .. ".", parser.serializer, parser.deserializer,
        key_path), key_path)
end

--- For configure_context: { cache = MemcacheClient(serializer, deserializer) }
--- (or MemcacheClient{ serializer = , deserializer = }) reads cache.endpoint
--- and the other keys, and puts a MonitoredMemcacheConnection on each
--- request as cache.
function M.MemcacheClient(serializer, deserializer)
    if type(serializer) == "table" and deserializer == nil then
        serializer, deserializer = serializer.serializer, serializer.deserializer
    end
    return base.client_parser(build, { serializer = serializer, deserializer = deserializer })
end

return M
