-- The rate limiter's memcache back end (Baseplate.py's
-- baseplate.lib.ratelimit.backends.memcache; docs/lib-ratelimit.md): `add`
-- the window's counter as 0 with an expiry of 2 x interval, then `incr` it,
-- on the project's memcache client.
local ratelimit = require("baseplate.lib.ratelimit")
local backends = require("baseplate.lib.ratelimit.backends")
local memcache = require("baseplate.clients.memcache")

local type, setmetatable = type, setmetatable

local M = {}

local Backend = backends.class({})
M.MemcacheRateLimitBackend = Backend

local check_prefix = backends.check_prefix

--- MemcacheRateLimitBackend.new(memcache, prefix): memcache is a
--- MonitoredMemcacheConnection (a request's memcache client); prefix
--- defaults to "rl:".
function Backend.new(conn, prefix)
    if type(conn) ~= "table" or type(conn.incr) ~= "function" or type(conn.add) ~= "function" then
        error("MemcacheRateLimitBackend: expected a memcache connection", 2)
    end
    return setmetatable({ memcache = conn, prefix = check_prefix(prefix, "MemcacheRateLimitBackend") }, Backend)
end
M.new = Backend.new

--- Add amount to key's counter of this window: whether it is <= allowance.
function Backend:consume(key, amount, allowance, interval)
    local k = ratelimit.bucket_key(self.prefix, key, interval)
    -- "0" as text: every serializer stores a string as its bytes, which incr counts
    self.memcache:add(k, "0", 2 * interval, false)
    -- incr finds nothing when the counter expired in between: count amount
    local count = self.memcache:incr(k, amount, false) or amount
    return count <= allowance
end

local Factory = {}
Factory.__index = Factory

--- MemcacheRateLimitBackendContextFactory(memcache_pool, prefix): a context
--- factory whose objects are MemcacheRateLimitBackends on connections of
--- memcache_pool (memcache.pool_from_config's).
function M.MemcacheRateLimitBackendContextFactory(pool, prefix)
    if type(pool) ~= "table" or type(pool.with) ~= "function" then
        error("MemcacheRateLimitBackendContextFactory: expected a memcache pool", 2)
    end
    return setmetatable({ pool = pool,
        prefix = check_prefix(prefix, "MemcacheRateLimitBackendContextFactory") }, Factory)
end

function Factory:make_object_for_context(name, span)
    return Backend.new(memcache.monitored(name, span, self.pool), self.prefix)
end

--- The pool's gauges (runtime metrics), as the memcache client's factory.
function Factory:report_runtime_metrics(batch)
    memcache.context_factory(self.pool, nil):report_runtime_metrics(batch)
end

return M
