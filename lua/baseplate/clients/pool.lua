-- The connection pool every client uses (Redis, PostgreSQL, and later
-- Thrift, memcache…): bounded, filled lazily, waited on without blocking the
-- loop, and never losing a slot.
--
--   local pool = Pool.new{
--       name = "redis", size = 10, max_overflow = 0, timeout = 1,
--       connect = function() ... return conn end,     -- may wait; raises on failure
--       close = function(conn) end,
--       usable = function(conn) return not broken end, -- checked on return and reuse
--       recycle = 60,                                   -- seconds; nil: never
--       ping = function(conn) end,                      -- pre-ping on checkout (raise if dead)
--   }
--   pool:with(function(conn) ... end)  -- checkout, run, return (discard on error)
--
-- A caller that finds every slot taken waits (its coroutine yields) for a
-- connection to come back, up to `timeout`, then gets "<name>: no
-- connection available within Ns (N in use)". Whatever happens while a
-- connection is out (an error, a timeout, a dead server), pool:with returns
-- it or discards it: the count of open connections is always right.
local runtime = require("baseplate.runtime")
local core = require("baseplate.core")

local M = {}
local Pool = {}
Pool.__index = Pool
M.Pool = Pool

local type, error, tostring, xpcall, setmetatable = type, error, tostring, xpcall, setmetatable
local remove = table.remove

function M.new(opts)
    assert(type(opts.connect) == "function", "pool: connect function required")
    local size = opts.size or 10
    if type(size) ~= "number" or size < 1 then
        error("pool " .. tostring(opts.name) .. ": size must be at least 1", 2)
    end
    return setmetatable({
        name = opts.name or "pool",
        size = size,
        max_overflow = opts.max_overflow or 0,
        timeout = opts.timeout or 1,
        recycle = opts.recycle,
        connect_fn = opts.connect,
        close_fn = opts.close or function() end,
        usable_fn = opts.usable or function() return true end,
        ping_fn = opts.ping,
        idle = {},       -- { conn = , since = } available connections (LIFO)
        open = 0,        -- connections open or being opened
        in_use = 0,
        waiters = {},    -- waiter ids, first come first served
    }, Pool)
end

local function close_conn(self, conn)
    local ok, err = pcall(self.close_fn, conn)
    if not ok then
        require("baseplate.log").get_logger("baseplate.clients"):warning(
            "%s: closing a connection failed: %s", self.name, tostring(err))
    end
end

-- Give a free slot or connection to the first waiter, if any.
local function wake_one(self)
    local waiters = self.waiters
    if waiters[1] == nil then return end -- (no table.remove at 1: the JIT compiles this path)
    runtime.wake(remove(waiters, 1), core.OK)
end

local function start_wait(id, self)
    self.waiters[#self.waiters + 1] = id
    return core.AGAIN
end

-- Wait (first come, first served) for a connection or a slot to come back,
-- until `deadline`. A timed-out waiter leaves the queue.
local function wait(self, deadline)
    local left = deadline - runtime.now()
    if left <= 0 then return false end
    local rc, id = runtime.await_timeout(left, start_wait, self)
    if rc ~= core.OK then
        local waiters = self.waiters
        for i = #waiters, 1, -1 do
            if waiters[i] == id then
                remove(waiters, i)
                break
            end
        end
    end
    return rc == core.OK
end

--- Take a connection (opening one if a slot is free), waiting up to the
--- pool's timeout. Raises on timeout or when connecting fails.
function Pool:checkout()
    -- The common case without a loop, so that the JIT compiles the calls
    -- around it: the last idle connection, usable, nothing to check.
    local idle = self.idle
    local n = #idle
    if n > 0 and not self.recycle and not self.ping_fn then
        local item = idle[n]
        if self.usable_fn(item.conn) then
            idle[n] = nil
            self.in_use = self.in_use + 1
            return item.conn, item.since
        end
    end
    local deadline = runtime.now() + self.timeout
    while true do
        local item = remove(self.idle)
        while item do
            local conn = item.conn
            if not self.usable_fn(conn) or (self.recycle and runtime.now() - item.since > self.recycle) then
                self.open = self.open - 1
                close_conn(self, conn)
                item = remove(self.idle)
            else
                if self.ping_fn then
                    local ok = pcall(self.ping_fn, conn)
                    if not ok then
                        self.open = self.open - 1
                        close_conn(self, conn)
                        item = remove(self.idle)
                        goto continue
                    end
                end
                self.in_use = self.in_use + 1
                return conn, item.since
            end
            ::continue::
        end
        if self.open < self.size + self.max_overflow then
            self.open = self.open + 1
            self.in_use = self.in_use + 1
            local ok, conn = pcall(self.connect_fn)
            if not ok then
                self.open = self.open - 1
                self.in_use = self.in_use - 1
                wake_one(self) -- the slot is free again
                error(conn, 0)
            end
            return conn, runtime.now()
        end
        if not wait(self, deadline) then
            error(string.format("%s: no connection available within %gs (%d in use)",
                self.name, self.timeout, self.in_use), 0)
        end
    end
end

--- Give a connection back; `discard` (or an unusable connection) closes it.
--- A connection that comes back to a pool already holding `size` idle ones
--- closes (as SQLAlchemy's QueuePool): under load beyond `size`, overflow
--- connections are reused rather than opened and closed per request.
function Pool:checkin(conn, discard, since)
    self.in_use = self.in_use - 1
    if discard or not self.usable_fn(conn) or #self.idle >= self.size then
        self.open = self.open - 1
        close_conn(self, conn)
    else
        self.idle[#self.idle + 1] = { conn = conn, since = since or runtime.now() }
    end
    wake_one(self)
end

local function keep(err)
    if type(err) == "table" then return err end
    return tostring(err)
end

local function settle(self, conn, since, ok, ...)
    if ok then
        self:checkin(conn, false, since)
        return ...
    end
    local err = ...
    local known = type(err) == "table" and err.connection_ok
    self:checkin(conn, not known, since)
    error(err, 0)
end

--- Run fn(conn, ...) with a checked-out connection and give it back (an
--- error discards it unless the error is a table with `connection_ok`);
--- fn's results are returned.
function Pool:with(fn, ...)
    local conn, since = self:checkout()
    -- (fn's results passed on as arguments rather than packed in a table
    -- and unpacked with table.maxn, which the JIT does not compile)
    return settle(self, conn, since, xpcall(fn, keep, conn, ...))
end

--- Pool figures: size, in_use, open_and_available, overflow.
function Pool:stats()
    return {
        size = self.size,
        in_use = self.in_use,
        open_and_available = #self.idle,
        overflow = math.max(0, self.open - self.size),
        open = self.open,
    }
end

--- Close the idle connections.
function Pool:close()
    for _, item in ipairs(self.idle) do
        self.open = self.open - 1
        close_conn(self, item.conn)
    end
    self.idle = {}
end

return M
