-- The rate limiter's Redis back end (Baseplate.py's
-- baseplate.lib.ratelimit.backends.redis; docs/lib-ratelimit.md): INCRBY of
-- the window's counter and EXPIRE of 2 x interval in one MULTI/EXEC
-- pipeline ("{name}.pipeline_ratelimit" spans), on the project's Redis client.
local ratelimit = require("baseplate.lib.ratelimit")
local backends = require("baseplate.lib.ratelimit.backends")
local redis = require("baseplate.clients.redis")

local type, setmetatable = type, setmetatable

local M = {}

local Backend = backends.class({})
M.RedisRateLimitBackend = Backend

local check_prefix = backends.check_prefix

--- RedisRateLimitBackend.new(redis, prefix): redis is a
--- MonitoredRedisConnection (a request's Redis client); prefix defaults to "rl:".
function Backend.new(conn, prefix)
    if type(conn) ~= "table" or type(conn.pipeline) ~= "function" then
        error("RedisRateLimitBackend: expected a Redis connection", 2)
    end
    return setmetatable({ redis = conn, prefix = check_prefix(prefix, "RedisRateLimitBackend") }, Backend)
end
M.new = Backend.new

--- Add amount to key's counter of this window: whether it is <= allowance.
function Backend:consume(key, amount, allowance, interval)
    local k = ratelimit.bucket_key(self.prefix, key, interval)
    local replies = self.redis:pipeline("ratelimit")
        :incrby(k, amount)
        :expire(k, 2 * interval)
        :execute()
    return replies[1] <= allowance
end

local Factory = {}
Factory.__index = Factory

--- RedisRateLimitBackendContextFactory(redis_pool, prefix): a context
--- factory whose objects are RedisRateLimitBackends on connections of
--- redis_pool (redis.pool_from_config's).
function M.RedisRateLimitBackendContextFactory(pool, prefix)
    if type(pool) ~= "table" or type(pool.with) ~= "function" then
        error("RedisRateLimitBackendContextFactory: expected a Redis pool", 2)
    end
    return setmetatable({ pool = pool, prefix = check_prefix(prefix, "RedisRateLimitBackendContextFactory") },
        Factory)
end

function Factory:make_object_for_context(name, span)
    return Backend.new(redis.monitored(name, span, self.pool), self.prefix)
end

--- The pool's gauges (runtime metrics), as the Redis client's factory.
function Factory:report_runtime_metrics(batch)
    redis.context_factory(self.pool):report_runtime_metrics(batch)
end

return M
