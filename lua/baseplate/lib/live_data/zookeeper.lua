-- A ZooKeeper client on the loop (docs/live-data.md), over
-- src/clients/zookeeper.c: Baseplate.py's baseplate.lib.live_data.zookeeper
-- (zookeeper_client_from_config), with the few calls of Kazoo that live
-- data needs.
--
--   local live_data = require("baseplate.lib.live_data")
--   local zk = live_data.zookeeper_client_from_config(secrets, app_config)
--   zk:start()                                   -- wait for the session (15 s)
--   local data, stat = zk:get("/a/node")         -- raises NoNodeError…
--   zk:data_watch("/a/node", function(data, stat) … end)
--
-- Calls that talk to ZooKeeper wait (a request, a script, baseplate.spawn).
-- Failures raise client errors (baseplate.clients.base) whose class is
-- Kazoo's exception name: NoNodeError, NodeExistsError, BadVersionError,
-- NoAuthError, ConnectionError (connection lost, session expired, the
-- client closed) or ZooKeeperError; err.code is ZooKeeper's code.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local clients = require("baseplate.clients.base")
local log = require("baseplate.log")

ffi.cdef([[
typedef struct bp_zk_s bp_zk_t;
typedef struct bp_zk_op_s bp_zk_op_t;
typedef struct bp_zk_stat_s {
  int64_t czxid;
  int64_t mzxid;
  int64_t ctime;
  int64_t mtime;
  int32_t version;
  int32_t data_length;
  int64_t ephemeral_owner;
} bp_zk_stat_t;
bp_zk_t *bp_zk_new(const char *hosts, double timeout, int read_only, char *err, size_t errlen);
int bp_zk_add_auth(bp_zk_t *zk, const char *scheme, const char *cred, size_t len);
int bp_zk_connected(bp_zk_t *zk);
int64_t bp_zk_session_id(bp_zk_t *zk);
int bp_zk_next_event(bp_zk_t *zk, int waiter);
int bp_zk_event(bp_zk_t *zk, int *type, const char **path, int *session);
bp_zk_op_t *bp_zk_call(bp_zk_t *zk, int kind, const char *path, const char *data, size_t len, int arg,
                       int waiter, int *rc);
int bp_zk_result(bp_zk_op_t *op, const char **data, size_t *len, bp_zk_stat_t *stat);
void bp_zk_op_free(bp_zk_op_t *op);
const char *bp_zk_strerror(int zrc);
const char *bp_zk_error(bp_zk_t *zk);
void bp_zk_close(bp_zk_t *zk);
]])

local C = core.C
local OK = core.OK
local format = string.format

local M = {}

-- Events and operations (include/baseplate/zookeeper.h).
M.CONNECTED, M.DISCONNECTED, M.EXPIRED, M.AUTH_FAILED = 1, 2, 3, 4
M.CREATED, M.DELETED, M.CHANGED, M.CHILD, M.RESYNC = 5, 6, 7, 8, 9
M.GET, M.EXISTS, M.SET, M.CREATE, M.DELETE = 1, 2, 3, 4, 5

-- ZooKeeper's codes the Lua side names (zookeeper.h's ZOO_ERRORS).
M.ZOK, M.ZNONODE, M.ZNOAUTH, M.ZBADVERSION, M.ZNODEEXISTS = 0, -101, -102, -103, -110
local CLASSES = {
    [-101] = "NoNodeError", [-102] = "NoAuthError", [-103] = "BadVersionError", [-110] = "NodeExistsError",
    [-4] = "ConnectionError",   -- ZCONNECTIONLOSS
    [-7] = "ConnectionError",   -- ZOPERATIONTIMEOUT
    [-9] = "ConnectionError",   -- ZINVALIDSTATE (between sessions)
    [-112] = "ConnectionError", -- ZSESSIONEXPIRED
    [-116] = "ConnectionError", -- ZCLOSING
}

local logger = log.get_logger("baseplate.lib.live_data.zookeeper")

local errbuf = ffi.new("char[512]")
local rc_cell = ffi.new("int[1]")
local data_cell, len_cell = ffi.new("const char *[1]"), ffi.new("size_t[1]")
local stat_cell = ffi.new("bp_zk_stat_t")
local type_cell, session_cell = ffi.new("int[1]"), ffi.new("int[1]")
local path_cell = ffi.new("const char *[1]")

local Client = {}
Client.__index = Client
M.Client = Client

local function zk_error(self, zrc, op, path)
    local class = CLASSES[zrc] or "ZooKeeperError"
    return clients.error({
        class = class, code = zrc, client = "zookeeper", endpoint = self.hosts, command = op,
        message = format("zookeeper %s %s: %s", op, path, ffi.string(C.bp_zk_strerror(zrc))),
        connection_ok = class ~= "ConnectionError",
    })
end

local function stat_table(st)
    return {
        czxid = st.czxid, mzxid = st.mzxid, ctime = tonumber(st.ctime), mtime = tonumber(st.mtime),
        version = st.version, data_length = st.data_length, ephemeral_owner = st.ephemeral_owner,
    }
end

local function start_op(id, self, box)
    local data = box.data
    box.op = C.bp_zk_call(self.zk, box.kind, box.path, data, data and #data or 0, box.arg, id, rc_cell)
    local rc = rc_cell[0]
    return rc
end

local function closed_error(self, why)
    return clients.error({ class = "ConnectionError", client = "zookeeper", endpoint = self.hosts,
        message = "zookeeper: " .. why, code = -116, connection_ok = false })
end

-- One operation: ZooKeeper's code, the data and the stat (a table).
local function call(self, kind, path, data, arg)
    if self.closed then error(closed_error(self, "the client is closed"), 3) end
    local box = { kind = kind, path = path, data = data, arg = arg or 0 }
    local rc = runtime.await(start_op, self, box)
    local op = box.op
    if op == nil then
        if rc == core.EINVAL then error(ffi.string(C.bp_zk_error(self.zk)), 3) end
        error(closed_error(self, core.strerror(rc)), 3)
    end
    if rc ~= OK then -- (closed, or the request's time is up: C frees it once it ends)
        C.bp_zk_op_free(op)
        error(closed_error(self, core.strerror(rc)), 3)
    end
    local zrc = C.bp_zk_result(op, data_cell, len_cell, stat_cell)
    local value, st
    if zrc == 0 then
        if data_cell[0] ~= nil then value = ffi.string(data_cell[0], len_cell[0]) end
        st = stat_table(stat_cell)
    end
    C.bp_zk_op_free(op)
    return zrc, value, st
end

local function check(self, zrc, what, path)
    if zrc ~= 0 then error(zk_error(self, zrc, what, path), 3) end
end

--- The node's data (a string; "" for a node without data) and stat
--- ({ version, mzxid, czxid, mtime, ctime, data_length, ephemeral_owner }).
--- `watch`: true to be told when it changes (data_watch uses this).
function Client:get(path, watch)
    local zrc, value, st = call(self, M.GET, path, nil, watch and 1 or 0)
    check(self, zrc, "get", path)
    return value or "", st
end

--- The node's stat, or nil when it does not exist.
function Client:exists(path, watch)
    local zrc, _, st = call(self, M.EXISTS, path, nil, watch and 1 or 0)
    if zrc == M.ZNONODE then return nil end
    check(self, zrc, "exists", path)
    return st
end

--- Set the node's data; `version` (default -1: any) must be its current
--- one (else BadVersionError). Returns the new stat.
function Client:set(path, data, version)
    local zrc, _, st = call(self, M.SET, path, data, version or -1)
    check(self, zrc, "set", path)
    return st
end

--- Create the node with `data`. opts.acl: "open" (everyone may do
--- anything; the default) or "creator" (only the identities of this
--- client's credentials).
function Client:create(path, data, opts)
    local acl = opts and opts.acl or "open"
    if acl ~= "open" and acl ~= "creator" then error("create: acl must be \"open\" or \"creator\"", 2) end
    local zrc = call(self, M.CREATE, path, data or "", acl == "creator" and 1 or 0)
    check(self, zrc, "create", path)
    return path
end

--- Delete the node (`version`: as for set).
function Client:delete(path, version)
    local zrc = call(self, M.DELETE, path, nil, version or -1)
    check(self, zrc, "delete", path)
end

--- Whether the client is connected now.
function Client:is_connected()
    local c = C.bp_zk_connected(self.zk)
    return c ~= 0
end

--- The session's ID (a number; 0 before the first connection).
function Client:session_id()
    return tonumber(C.bp_zk_session_id(self.zk))
end

--- Wait until connected: up to `timeout` seconds (default 15, as Kazoo's
--- start), then a ConnectionError. The client keeps trying either way.
function Client:start(timeout)
    timeout = timeout or 15
    local deadline = runtime.now() + timeout
    while not self:is_connected() do
        if runtime.now() >= deadline then
            error(clients.error({ class = "ConnectionError", client = "zookeeper", endpoint = self.hosts,
                message = format("zookeeper: not connected to %s after %gs", self.hosts, timeout) }), 2)
        end
        runtime.sleep(0.02)
    end
    return self
end

--------------------------------------------------------------------------------
-- Watches: Kazoo's DataWatch. fn(data, stat) is called with the node's
-- data and stat at once and after each change; with nil, nil while the
-- node does not exist. After a reconnection or a new session every watch
-- reads its node again, and fn is called when the node changed meanwhile.

local function deliver(w, data, st)
    w.delay = nil
    local key = st and tostring(st.mzxid) or "none"
    if w.seen == key then return end
    w.seen = key
    local ok, err = pcall(w.fn, data, st)
    if not ok then logger:error("data watch of %s: %s", w.path, runtime.message_of(err)) end
end

-- Read the node (get; exists when there is none), setting its watch.
local function refresh_once(self, w)
    while true do
        local zrc, value, st = call(self, M.GET, w.path, nil, 1)
        if zrc == 0 then
            return deliver(w, value or "", st)
        elseif zrc == M.ZNONODE then
            local erc = call(self, M.EXISTS, w.path, nil, 1)
            if erc == M.ZNONODE then return deliver(w, nil, nil) end
            if erc ~= 0 then return self:_retry_later(w, erc) end
            -- (created in between: read it)
        else
            return self:_retry_later(w, zrc)
        end
    end
end

function Client:_retry_later(w, zrc)
    -- A connection loss: the next CONNECTED reads it again. Anything else
    -- (no permission…) is logged and tried again, less and less often (up
    -- to once a minute).
    if CLASSES[zrc] == "ConnectionError" then return end
    w.delay = math.min((w.delay or self.timeout / 2) * 2, 60)
    logger:error("cannot read %s: %s (trying again in %gs)", w.path, ffi.string(C.bp_zk_strerror(zrc)), w.delay)
    runtime.after(w.delay, function()
        if not self.closed then self:_refresh(w) end
    end)
end

local function refresh_job(self, w)
    repeat
        w.again = false
        local ok, err = pcall(refresh_once, self, w)
        if not ok then
            if not clients.is_error(err) or err.class ~= "ConnectionError" then
                logger:error("data watch of %s: %s", w.path, runtime.message_of(err))
            end
        end
    until not w.again or self.closed
    w.running = false
end

function Client:_refresh(w)
    if w.running then
        w.again = true
        return
    end
    w.running = true
    runtime.spawn(refresh_job, self, w)
end

local function pump_start(id, self)
    local rc = C.bp_zk_next_event(self.zk, id)
    return rc
end

-- The events of the C side, one coroutine per client.
local function pump(self)
    while not self.closed do
        local rc = runtime.await(pump_start, self)
        if rc ~= OK then break end
        while C.bp_zk_event(self.zk, type_cell, path_cell, session_cell) == OK do
            local t = type_cell[0]
            local path = ffi.string(path_cell[0])
            if t == M.CONNECTED or t == M.RESYNC then
                for _, w in ipairs(self.watches) do self:_refresh(w) end
            elseif t >= M.CREATED and t <= M.CHANGED then
                for _, w in ipairs(self.watches) do
                    if w.path == path then self:_refresh(w) end
                end
            end
            for _, fn in ipairs(self.listeners) do
                local ok, err = pcall(fn, t, path, session_cell[0] ~= 0)
                if not ok then logger:error("session listener: %s", runtime.message_of(err)) end
            end
        end
    end
    self.pumping = false
end

--- Call fn(data, stat) now and whenever the node at `path` changes (see
--- above). fn runs in a coroutine of its own and may wait.
function Client:data_watch(path, fn)
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("data_watch: expected a node path", 2) end
    if type(fn) ~= "function" then error("data_watch: expected a function", 2) end
    local w = { path = path, fn = fn }
    self.watches[#self.watches + 1] = w
    if self:is_connected() then self:_refresh(w) end
    return w
end

--- Call fn(event, path, new_session) for every event of the client:
--- M.CONNECTED (new_session true when the session is new), M.DISCONNECTED,
--- M.EXPIRED, M.AUTH_FAILED, M.CREATED/DELETED/CHANGED/CHILD (with the
--- node's path), M.RESYNC. fn must not wait.
function Client:add_listener(fn)
    self.listeners[#self.listeners + 1] = fn
end

--- Close the session. Calls in flight fail with ConnectionError.
function Client:close()
    if self.closed then return end
    self.closed = true
    C.bp_zk_close(ffi.gc(self.zk, nil))
end
Client.stop = Client.close

--------------------------------------------------------------------------------

--- A client for `hosts` ("zk01:2181,zk02:2181[/chroot]"). opts: timeout
--- (the session's, seconds; default 5), read_only (accept read-only
--- servers), auth (a list of { scheme, credential }). It connects in the
--- background at once, for as long as it takes.
function M.new(hosts, opts)
    opts = opts or {}
    local timeout = opts.timeout or 5
    local zk = C.bp_zk_new(hosts, timeout, opts.read_only and 1 or 0, errbuf, ffi.sizeof(errbuf))
    if zk == nil then error(ffi.string(errbuf), 2) end
    zk = ffi.gc(zk, C.bp_zk_close)
    local self = setmetatable({ zk = zk, hosts = hosts, timeout = timeout, watches = {}, listeners = {},
        closed = false, pumping = true }, Client)
    for _, a in ipairs(opts.auth or {}) do
        local rc = C.bp_zk_add_auth(zk, a[1], a[2], #a[2])
        if rc ~= OK then error("zookeeper credentials: " .. core.strerror(rc), 2) end
    end
    runtime.spawn(pump, self)
    return self
end

--- Baseplate.py's zookeeper_client_from_config(secrets, app_config,
--- read_only): zookeeper.hosts, zookeeper.credentials (secret paths whose
--- simple secrets are "user:password", sent as digest credentials),
--- zookeeper.timeout (default 5 seconds). `secrets` may be nil when there
--- are no credentials.
function M.zookeeper_client_from_config(secrets, app_config, read_only)
    local config = require("baseplate.lib.config")
    local cfg = config.parse_config(app_config, {
        zookeeper = {
            hosts = config.String,
            credentials = config.Optional(config.TupleOf(config.String), {}),
            timeout = config.Optional(config.NonNegative(config.Timespan), 5),
        },
    }).zookeeper
    if not (cfg.timeout > 0) then error("zookeeper.timeout: must be above 0", 2) end
    local auth = {}
    for _, path in ipairs(cfg.credentials) do
        if not secrets then error("zookeeper.credentials: no secrets store to read " .. path .. " from", 2) end
        auth[#auth + 1] = { "digest", secrets:get_simple(path) }
    end
    return M.new(cfg.hosts, { timeout = cfg.timeout, read_only = read_only, auth = auth })
end

return M
