-- Redis Cluster: the Redis client's connections, routed by key slot.
--
--   bp:configure_context({ foo = redis_cluster.ClusterRedisClient() })
--   -- [app:main] foo.url = redis://seed-node:7000/0
--   request.foo:set("k", "v")
--   request.foo:mget("{user:1}:a", "{user:1}:b")   -- one slot: fine
--   local p = request.foo:pipeline("warm")        -- split by node, replies in order
--
-- The slot map comes from CLUSTER SLOTS on any node it knows (the URL's
-- first) and is read again on a MOVED redirection, a CLUSTERDOWN or a node
-- that stopped answering; ASK redirections are followed with ASKING. Each
-- node has its own pool of the Redis client's connections (one connection
-- layer); one pool of tokens bounds the connections of the whole cluster
-- unless max_connections_per_node is set. See docs/redis-cluster.md.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local Pool = require("baseplate.clients.pool")
local redis = require("baseplate.clients.redis")
local base = require("baseplate.clients.base")
local span_mod = require("baseplate.span")

ffi.cdef([[
int bp_redis_keyslot(const char *key, size_t len);
]])

local C = core.C
local type, tostring, tonumber, select, setmetatable, error, pcall, pairs, ipairs =
    type, tostring, tonumber, select, setmetatable, error, pcall, pairs, ipairs
local upper, format = string.upper, string.format

local M = {}

M.SLOTS = 16384

--- The hash slot of `key` (a string): CRC16 of the key or its {hash tag}.
function M.keyslot(key)
    key = tostring(key)
    return C.bp_redis_keyslot(key, #key)
end

--------------------------------------------------------------------------------
-- Commands: their keys, and whether they read

-- (the reference's lists of read and write commands for hot-key tracking,
-- which also say which commands a replica may answer)
local SINGLE_KEY_READ = {}
for _, c in ipairs({ "BITCOUNT", "BITPOS", "GEODIST", "GEOHASH", "GEOPOS", "GEORADIUS", "GEORADIUSBYMEMBER",
    "GET", "GETBIT", "GETRANGE", "HEXISTS", "HGET", "HGETALL", "HKEYS", "HLEN", "HMGET", "HSTRLEN", "HVALS",
    "LINDEX", "LLEN", "LRANGE", "PTTL", "SCARD", "SISMEMBER", "SMEMBERS", "SRANDMEMBER", "STRLEN", "TTL",
    "ZCARD", "ZCOUNT", "ZRANGE", "ZSCORE" }) do SINGLE_KEY_READ[c] = true end
local MULTI_KEY_READ = { EXISTS = true, MGET = true, SDIFF = true, SINTER = true, SUNION = true }
local SINGLE_KEY_WRITE = {}
for _, c in ipairs({ "EXPIRE", "EXPIREAT", "HINCRBY", "HINCRBYFLOAT", "HDEL", "HMSET", "HSET", "HSETNX",
    "LPUSH", "LREM", "LPOP", "LSET", "LTRIM", "RPOP", "RPUSH", "SADD", "SET", "SETNX", "SPOP", "SREM", "ZADD",
    "ZINCRBY", "ZPOPMAX", "ZPOPMIN", "ZREM", "ZREMRANGEBYLEX", "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE" }) do SINGLE_KEY_WRITE[c] = true end
local MULTI_KEY_WRITE = { DEL = true }
local MULTI_KEY_BATCH_WRITE = { MSET = true, MSETNX = true }

-- Commands whose every argument is a key.
local ALL_KEYS = { DEL = true, EXISTS = true, MGET = true, SDIFF = true, SINTER = true, SUNION = true,
    UNLINK = true, TOUCH = true, WATCH = true, PFCOUNT = true, PFMERGE = true, SDIFFSTORE = true,
    SINTERSTORE = true, SUNIONSTORE = true, RENAME = true, RENAMENX = true, RPOPLPUSH = true }
-- Commands with keys and a timeout last (BLPOP k1 k2 5).
local KEYS_THEN_ONE = { BLPOP = true, BRPOP = true, BRPOPLPUSH = true }
-- Commands without a key: any master answers.
local KEYLESS = {}
for _, c in ipairs({ "PING", "ECHO", "INFO", "TIME", "DBSIZE", "LASTSAVE", "CLUSTER", "COMMAND", "CONFIG",
    "FLUSHALL", "FLUSHDB", "SCRIPT", "RANDOMKEY", "KEYS", "SCAN", "CLIENT", "MEMORY", "SLOWLOG", "ROLE",
    "WAIT", "PUBLISH", "ACL", "AUTH", "READONLY", "READWRITE" }) do KEYLESS[c] = true end

-- The keys of a command (an argument list, name upper-cased), or nil for
-- a command without one.
local function keys_of(cmd)
    local name, n = cmd[1], #cmd
    if KEYLESS[name] then return nil end
    if ALL_KEYS[name] then
        local keys = {}
        for i = 2, n do keys[#keys + 1] = cmd[i] end
        return keys
    end
    if KEYS_THEN_ONE[name] then
        local keys = {}
        for i = 2, n - 1 do keys[#keys + 1] = cmd[i] end
        return keys
    end
    if MULTI_KEY_BATCH_WRITE[name] then
        local keys = {}
        for i = 2, n, 2 do keys[#keys + 1] = cmd[i] end
        return keys
    end
    if name == "EVAL" or name == "EVALSHA" then
        local numkeys = tonumber(cmd[3]) or 0
        local keys = {}
        for i = 4, 3 + numkeys do keys[#keys + 1] = cmd[i] end
        return #keys > 0 and keys or nil
    end
    if name == "SMOVE" then return { cmd[2], cmd[3] } end
    if n >= 2 then return { cmd[2] } end
    return nil
end

local function cluster_error(class, message, fields)
    local e = fields or {}
    e.class, e.message = class, message
    return setmetatable(e, redis.RedisError)
end

-- The slot a command goes to (nil: any node); raises when its keys are in
-- different slots.
local function slot_of(cluster, cmd)
    local keys = keys_of(cmd)
    if not keys or #keys == 0 then return nil end
    local slot = M.keyslot(keys[1])
    for i = 2, #keys do
        local s = M.keyslot(keys[i])
        if s ~= slot then
            error(cluster_error("ClusterCrossSlotError",
                format("redis cluster %s: %s: keys in different slots (%s in %d, %s in %d); put them in one"
                    .. " slot with a {hash tag}", cluster.name, cmd[1], tostring(keys[1]), slot,
                    tostring(keys[i]), s), { client = cluster.name, command = cmd[1] }), 0)
        end
    end
    return slot
end

local function is_read(name)
    return SINGLE_KEY_READ[name] or MULTI_KEY_READ[name] or false
end

--------------------------------------------------------------------------------
-- The cluster: nodes, their pools, the slot map

local Cluster = {}
Cluster.__index = Cluster
M.ClusterConnectionPool = Cluster

-- The pool of node `key` ("host:port"), made on first use.
function Cluster:node(key)
    local node = self.nodes[key]
    if node then return node end
    local host, port = key:match("^(.*):(%d+)$")
    local t = self.template
    local target = {
        host = host, port = tonumber(port), db = 0, password = t.password, tls = t.tls, tls_c = t.tls_c,
        tls_ca_file = t.tls_ca_file, connect_timeout = t.connect_timeout, timeout = t.timeout,
        credentials_secret = t.credentials_secret, secrets = t.secrets,
        where = key, client = self.name, readonly = self.read_from_replicas,
    }
    node = { key = key, pool = redis.target_pool(target, self.node_size, self.pool_timeout, self.name) }
    self.nodes[key] = node
    return node
end

local function start_refresh_wait(id, waiters)
    waiters[#waiters + 1] = id
    return core.AGAIN
end

-- Wait (up to the pool timeout) for the refresh under way to end: the
-- refreshing caller wakes every waiter when it is done.
local function wait_refresh(self)
    local waiters = self.refresh_waiters
    local rc, id = runtime.await_timeout(self.pool_timeout, start_refresh_wait, waiters)
    if rc ~= core.OK then
        for i = #waiters, 1, -1 do
            if waiters[i] == id then
                table.remove(waiters, i)
                break
            end
        end
    end
end

-- Read the slot map from the first node that answers CLUSTER SLOTS: the
-- seeds, then every node known. One read at a time; callers that come
-- while one is under way wait for it (on a queue, woken when it ends).
function Cluster:refresh()
    if self.refreshing then
        return wait_refresh(self)
    end
    self.refreshing = true
    local tried, last_err = {}, nil
    local order = {}
    for _, k in ipairs(self.seeds) do order[#order + 1] = k end
    for k in pairs(self.nodes) do order[#order + 1] = k end
    local ok_any = false
    for _, key in ipairs(order) do
        if not tried[key] then
            tried[key] = true
            local pool = self:node(key).pool
            local ok, replies = pcall(pool.with, pool, redis.send, { { "CLUSTER", "SLOTS" } }, "CLUSTER SLOTS")
            local r = ok and replies[1]
            if ok and type(r) == "table" and not redis.is_error(r) then
                -- (a reply it cannot read must not leave `refreshing` set)
                local applied, aerr = pcall(self.apply_slots, self, r, key)
                if applied then
                    ok_any = true
                    break
                end
                r = aerr
            end
            last_err = ok and r or replies
        end
    end
    self.refreshing = false
    self.refreshed_at = runtime.now()
    local waiters = self.refresh_waiters
    self.refresh_waiters = {}
    for i = 1, #waiters do runtime.wake(waiters[i], core.OK) end
    if not ok_any then
        error(cluster_error("ClusterError", format("redis cluster %s: no node answered CLUSTER SLOTS (%s)",
            self.name, tostring(last_err and (last_err.message or last_err)) ), { client = self.name }), 0)
    end
end

-- CLUSTER SLOTS' reply: { start, end, { host, port, id }, replicas… }…
function Cluster:apply_slots(reply, asked)
    local slots = {}
    local asked_host = asked:match("^(.*):%d+$")
    for _, range in ipairs(reply) do
        local first, last = tonumber(range[1]), tonumber(range[2])
        local owners = {}
        for i = 3, range.n or #range do
            local n = range[i]
            if type(n) == "table" and n[2] then
                local host = n[1]
                if host == nil or host == "" or host == "?" then host = asked_host end
                owners[#owners + 1] = host .. ":" .. tostring(n[2])
            end
        end
        if first and last and #owners > 0 then
            for s = first, last do slots[s] = owners end
        end
    end
    self.slots = slots
end

-- The node for `slot`: its master, or for a read with read_from_replicas
-- any of its nodes at random (the reference's choice).
function Cluster:node_for(slot, read)
    if slot == nil then -- any master
        local seen = {}
        for s = 0, M.SLOTS - 1, 1024 do
            local owners = self.slots[s]
            if owners then seen[#seen + 1] = owners[1] end
        end
        if #seen == 0 then return nil end
        return seen[math.random(#seen)]
    end
    local owners = self.slots[slot]
    if not owners then return nil end
    if read and self.read_from_replicas and #owners > 1 then return owners[math.random(#owners)] end
    return owners[1]
end

local function token() return {} end
local function noop() end
local function always() return true end

-- Run fn(conn, …) on a connection of node `key`, within the cluster-wide
-- limit when there is one.
local function on_node(self, key, fn, a, b)
    local pool = self:node(key).pool
    if self.tokens then
        return self.tokens:with(function() return pool:with(fn, a, b) end)
    end
    return pool:with(fn, a, b)
end

local MAX_REDIRECTS = 16
local REFRESH_INTERVAL = 30 -- seconds between two readings of the slot map at most
local CONNECTION_RETRIES = 5

-- Send `cmd` to the node that owns its slot, following redirections;
-- returns the reply (an error reply as a RedisError value, not raised).
function Cluster:call(cmd, slot, read)
    local ask, last_err
    local conn_failures, down = 0, 0
    if self.slots and runtime.now() - self.refreshed_at > REFRESH_INTERVAL then
        pcall(self.refresh, self) -- (nodes added, replicas that joined: no error tells of them)
    end
    for _ = 1, MAX_REDIRECTS do
        if not self.slots then self:refresh() end
        local key = ask or self:node_for(slot, read)
        if not key then
            self:refresh()
            key = self:node_for(slot, read)
            if not key then
                error(cluster_error("SlotNotCoveredError",
                    format("redis cluster %s: slot %d is not covered by the cluster", self.name, slot),
                    { client = self.name, command = cmd[1] }), 0)
            end
        end
        local cmds = ask and { { "ASKING" }, cmd } or { cmd }
        ask = nil
        local ok, replies = pcall(on_node, self, key, redis.send, cmds, cmd[1])
        if not ok then
            -- the node is gone or slow: read the map again (a replica may
            -- have taken over) and try again a few times, then give up
            last_err = replies
            if type(replies) ~= "table" or not replies.class or replies.class == "ClusterError" then
                error(replies, 0)
            end
            conn_failures = conn_failures + 1
            if conn_failures > CONNECTION_RETRIES then error(replies, 0) end
            runtime.sleep(0.05 * 2 ^ (conn_failures - 1))
            pcall(self.refresh, self)
        else
            local r = replies[#replies]
            if not redis.is_error(r) then return r end
            local msg = r.message or ""
            local kind, _, where = msg:match("^(%u+) (%d+) (%S+)")
            if kind == "MOVED" then
                local owners = self.slots and self.slots[slot]
                if owners then owners[1] = where end
                self.stale = true
            elseif kind == "ASK" then
                ask = where
            elseif msg:find("^TRYAGAIN") then
                runtime.sleep(0.02)
            elseif msg:find("^CLUSTERDOWN") then
                down = down + 1
                if down > 3 then return r end -- (the reference's cluster_down_retry_attempts)
                runtime.sleep(0.1)
                pcall(self.refresh, self)
            else
                return r
            end
            last_err = r
        end
        if self.stale then
            self.stale = false
            pcall(self.refresh, self)
        end
    end
    error(cluster_error("ClusterError", format("redis cluster %s: %s: too many redirections (last: %s)",
        self.name, cmd[1], tostring(last_err and last_err.message)), { client = self.name, command = cmd[1] }), 0)
end

--- Pool figures summed over the nodes: size (max_connections), in_use,
--- open_connections.
function Cluster:stats()
    local in_use, open = 0, 0
    for _, node in pairs(self.nodes) do
        in_use = in_use + node.pool.in_use
        open = open + node.pool.open
    end
    return { size = self.max_connections, in_use = in_use, open_connections = open }
end

--- Close the idle connections of every node.
function Cluster:close()
    for _, node in pairs(self.nodes) do node.pool:close() end
end

local spec = {
    url = config.String,
    max_connections = config.Optional(config.Integer, 50),
    max_connections_per_node = config.Optional(config.Boolean, false),
    socket_connect_timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    socket_timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    read_from_replicas = config.Optional(config.Boolean, true),
    skip_full_coverage_check = config.Optional(config.Boolean, true),
    nodemanager_follow_cluster = config.Optional(config.Boolean, nil),
    decode_responses = config.Optional(config.Boolean, true),
    track_key_reads_sample_rate = config.Optional(config.Float, 0),
    track_key_writes_sample_rate = config.Optional(config.Float, 0),
    credentials_secret = config.Optional(config.String, nil),
}

--- The cluster "pool" from the keys under `prefix` ("rediscluster." by
--- default): url (required: a node to start from), max_connections (50),
--- max_connections_per_node (false), socket_connect_timeout,
--- socket_timeout, timeout (both of those when they are not set),
--- read_from_replicas (true), skip_full_coverage_check and
--- nodemanager_follow_cluster and decode_responses (accepted),
--- track_key_reads_sample_rate, track_key_writes_sample_rate (0),
--- credentials_secret (looked up in `secrets`, a baseplate.lib.secrets
--- store, at every new connection).
function M.cluster_pool_from_config(app_config, prefix, name, secrets)
    prefix = prefix or "rediscluster."
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, spec)
    local function bad(key, why) error(config.ConfigurationError(key_base .. "." .. key, why), 0) end
    local ok, target = pcall(redis.parse_url, cfg.url)
    if not ok then bad("url", target) end
    if cfg.max_connections < 1 then bad("max_connections", "must be at least 1") end
    for _, k in ipairs({ "track_key_reads_sample_rate", "track_key_writes_sample_rate" }) do
        if not (cfg[k] >= 0 and cfg[k] <= 1) then bad(k, "must be between 0 and 1") end
    end
    if target.db ~= 0 then bad("url", "a cluster has one database: 0") end
    redis.prepare_tls(target)
    if cfg.credentials_secret then
        if not secrets then
            bad("credentials_secret", "a secrets store is needed to use it"
                .. " (ClusterRedisClient({ secrets = store }), or cluster_pool_from_config's secrets argument)")
        end
        target.credentials_secret, target.secrets = cfg.credentials_secret, secrets
    end
    target.connect_timeout = cfg.socket_connect_timeout or cfg.timeout or 5
    target.timeout = cfg.socket_timeout or cfg.timeout or 0
    name = name or key_base
    local self = setmetatable({
        name = name,
        template = target,
        seeds = { target.host .. ":" .. target.port },
        nodes = {},
        refresh_waiters = {},
        slots = nil,
        max_connections = cfg.max_connections,
        node_size = cfg.max_connections,
        pool_timeout = cfg.timeout or 5,
        read_from_replicas = cfg.read_from_replicas,
        track_key_reads_sample_rate = cfg.track_key_reads_sample_rate,
        track_key_writes_sample_rate = cfg.track_key_writes_sample_rate,
    }, Cluster)
    if not cfg.max_connections_per_node then
        self.tokens = Pool.new({ name = name, size = cfg.max_connections, timeout = self.pool_timeout,
                                 connect = token, close = noop, usable = always })
    end
    return self
end

--------------------------------------------------------------------------------
-- The context object

local HOT_READS, HOT_WRITES = "baseplate-hot-key-tracker-reads", "baseplate-hot-key-tracker-writes"
local log

local function raise_reply(r, cluster, what)
    r.client, r.command = cluster.name, what
    error(r, 0)
end

local function count_keys(cluster, set, keys)
    if #keys == 0 then return end
    local cmds = {}
    for i, k in ipairs(keys) do cmds[i] = { "ZINCRBY", set, "1", k } end
    cmds[#cmds + 1] = { "EXPIRE", set, "86400" }
    local slot = M.keyslot(set)
    local ok, err = pcall(function()
        for _, c in ipairs(cmds) do cluster:call(c, slot, false) end
    end)
    if not ok then
        log = log or require("baseplate.log").get_logger("baseplate.clients.redis_cluster")
        log:warning("hot key tracking failed: %s", tostring(err))
    end
end

-- The reference's HotKeyTracker: a sample of the commands' keys counted in
-- two sorted sets of the cluster, which expire a day after the last count.
local function track(cluster, cmd)
    local name = cmd[1]
    local rr, wr = cluster.track_key_reads_sample_rate, cluster.track_key_writes_sample_rate
    if rr > 0 and runtime.random() < rr then
        if SINGLE_KEY_READ[name] then count_keys(cluster, HOT_READS, { cmd[2] })
        elseif MULTI_KEY_READ[name] then count_keys(cluster, HOT_READS, { select(2, unpack(cmd)) }) end
    end
    if wr > 0 and runtime.random() < wr then
        if SINGLE_KEY_WRITE[name] then count_keys(cluster, HOT_WRITES, { cmd[2] })
        elseif MULTI_KEY_WRITE[name] then count_keys(cluster, HOT_WRITES, { select(2, unpack(cmd)) })
        elseif MULTI_KEY_BATCH_WRITE[name] then
            local keys = {}
            for i = 2, #cmd, 2 do keys[#keys + 1] = cmd[i] end
            count_keys(cluster, HOT_WRITES, keys)
        end
    end
end

local function run_command(_, cluster, cmd)
    local r = cluster:call(cmd, slot_of(cluster, cmd), is_read(cmd[1]))
    if redis.is_error(r) then raise_reply(r, cluster, cmd[1]) end
    return r
end

local Monitored = {}
M.MonitoredClusterRedisConnection = Monitored

local monitored_mt = { __index = redis.command_index(Monitored) }

--- A connection object over `cluster` (cluster_pool_from_config) whose
--- commands are child spans "{name}.{COMMAND}" of `span` (when given).
function M.monitored(name, span, cluster)
    return setmetatable({ _name = name, _span = span, _cluster = cluster }, monitored_mt)
end

--- Run any command: execute_command("HSET", "h", "f", "v").
function Monitored:execute_command(...)
    if select("#", ...) == 0 then error("execute_command: no command", 2) end
    local cmd = { ... }
    cmd[1] = upper(tostring(cmd[1]))
    for i = 2, #cmd do cmd[i] = tostring(cmd[i]) end
    local cluster = self._cluster
    local r
    if self._span == nil then
        r = run_command(nil, cluster, cmd)
    else
        local child = self._span:make_child(self._name .. "." .. cmd[1])
        if span_mod.prometheus_on() then
            child:set_metric_family("redis_client", redis.metric_labels(self._name, "", cmd[1], "cluster"))
        end
        r = child:with(run_command, cluster, cmd)
    end
    if cluster.track_key_reads_sample_rate > 0 or cluster.track_key_writes_sample_rate > 0 then
        track(cluster, cmd)
    end
    return r
end

--- Not implemented: no transactions on a cluster (as in the reference).
function Monitored:transaction()
    error("transaction: not implemented for Redis Cluster", 2)
end

local Pipeline = {}
local pipeline_mt = { __index = redis.command_index(Pipeline) }

--- A pipeline: commands are queued; execute() sends them to their nodes,
--- one round trip per node, and returns the replies in the order given
--- (no MULTI/EXEC: a cluster has no transactions across nodes).
function Monitored:pipeline(name)
    if type(name) ~= "string" or name == "" then error("pipeline: a name is required", 2) end
    return setmetatable({ _conn = self, _name = name, _cmds = {} }, pipeline_mt)
end

function Pipeline:execute_command(...)
    local cmd = { ... }
    cmd[1] = upper(tostring(cmd[1]))
    for i = 2, #cmd do cmd[i] = tostring(cmd[i]) end
    self._cmds[#self._cmds + 1] = cmd
    return self
end

-- Send a pipeline: group its commands by node, one send per node; a
-- command that came back redirected (or whose node failed) goes again on
-- its own through call().
local function run_pipeline(_, cluster, cmds, name)
    if not cluster.slots then cluster:refresh() end
    local groups, order, slots = {}, {}, {}
    for i, cmd in ipairs(cmds) do
        local slot = slot_of(cluster, cmd)
        slots[i] = slot
        local key = cluster:node_for(slot, is_read(cmd[1])) or "?"
        local g = groups[key]
        if not g then
            g = { cmds = {}, index = {} }
            groups[key] = g
            order[#order + 1] = key
        end
        g.cmds[#g.cmds + 1] = cmd
        g.index[#g.index + 1] = i
    end
    local results = { n = #cmds }
    for _, key in ipairs(order) do
        local g = groups[key]
        local ok, replies = false, nil
        if key ~= "?" then ok, replies = pcall(on_node, cluster, key, redis.send, g.cmds, "pipeline " .. name) end
        for j, i in ipairs(g.index) do
            local r = ok and replies[j] or nil
            if not ok or (redis.is_error(r) and (r.message:find("^MOVED") or r.message:find("^ASK")
                or r.message:find("^TRYAGAIN") or r.message:find("^CLUSTERDOWN"))) then
                r = cluster:call(cmds[i], slots[i], is_read(cmds[i][1]))
            end
            results[i] = r
        end
    end
    for i = 1, #cmds do
        if redis.is_error(results[i]) then raise_reply(results[i], cluster, "pipeline " .. name) end
    end
    return results
end

function Pipeline:execute()
    local cmds = self._cmds
    self._cmds = {}
    if #cmds == 0 then return { n = 0 } end
    local conn = self._conn
    local cluster = conn._cluster
    local results
    if conn._span == nil then
        results = run_pipeline(nil, cluster, cmds, self._name)
    else
        local child = conn._span:make_child(conn._name .. ".pipeline_" .. self._name)
        if span_mod.prometheus_on() then
            child:set_metric_family("redis_client", redis.metric_labels(conn._name, "", "pipeline", "cluster"))
        end
        results = child:with(run_pipeline, cluster, cmds, self._name)
    end
    if cluster.track_key_reads_sample_rate > 0 or cluster.track_key_writes_sample_rate > 0 then
        for _, cmd in ipairs(cmds) do track(cluster, cmd) end
    end
    return results
end

--------------------------------------------------------------------------------
-- The context factory and its config parser

M.ClusterRedisContextFactory = base.Factory

local function make_monitored(name, span, factory)
    return M.monitored(name, span, factory.pool)
end

function M.context_factory(cluster)
    return base.context_factory(cluster, make_monitored, { pool_gauges = { "open_connections" } })
end

local function build(key_path, raw, parser)
    return M.context_factory(M.cluster_pool_from_config(raw, key_path .. ".", key_path, parser.secrets))
end

--- For configure_context: { foo = ClusterRedisClient() } reads foo.url and
--- the other keys, and puts a MonitoredClusterRedisConnection on each
--- request as foo. `opts.secrets` is the secrets store for
--- foo.credentials_secret.
function M.ClusterRedisClient(opts)
    return base.client_parser(build, { secrets = opts and opts.secrets })
end

return M
