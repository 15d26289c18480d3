-- Rate limits, as Baseplate.py's baseplate.lib.ratelimit
-- (docs/lib-ratelimit.md; formats.md "Smaller pieces"):
--
--   local ratelimit = require("baseplate.lib.ratelimit")
--   local backends = require("baseplate.lib.ratelimit.backends.redis")
--   bp:add_to_context("ratelimiter", ratelimit.RateLimiterContextFactory(
--       backends.RedisRateLimitBackendContextFactory(redis_pool), 10, 60))
--   -- in a handler:
--   local ok, err = pcall(request.ratelimiter.consume, request.ratelimiter, user_id)
--   if not ok and ratelimit.is_rate_limit_exceeded(err) then … 429 … end
--
-- A limiter counts, per key, what was consumed in the current window of
-- `interval` seconds (windows are aligned on the epoch: the counter's key
-- is "{prefix}{key}{floor(now / interval)}", kept for 2 x interval) and
-- refuses once the count passes `allowance`. The window follows
-- baseplate.time(), so a frozen test clock holds it.
local runtime = require("baseplate.runtime")

local type, setmetatable, getmetatable, tostring, error, floor, format =
    type, setmetatable, getmetatable, tostring, error, math.floor, string.format

local M = {}

--------------------------------------------------------------------------------
-- The error

local Exceeded = {}
Exceeded.__index = Exceeded
Exceeded.__tostring = function(e) return e.class .. ": " .. tostring(e.message) end
M.RateLimitExceededException = Exceeded

local function exceeded(key)
    return setmetatable({ class = "RateLimitExceededException", message = "Rate limit exceeded.", key = key },
        Exceeded)
end

--- Whether err is a RateLimitExceededException.
function M.is_rate_limit_exceeded(err)
    return type(err) == "table" and getmetatable(err) == Exceeded
end

--------------------------------------------------------------------------------
-- What the back ends share

--- The clock windows are counted on (seconds since the epoch); tests may
--- replace it.
M.clock = runtime.time

--- The counter's key for `key` now: prefix .. key .. floor(now / interval).
function M.bucket_key(prefix, key, interval)
    return prefix .. key .. format("%d", floor(M.clock() / interval))
end

local function whole(v)
    return type(v) == "number" and v == v and v ~= math.huge and v == floor(v)
end
M.is_whole = whole

--------------------------------------------------------------------------------
-- RateLimiter

local RateLimiter = {}
RateLimiter.__index = RateLimiter
M.RateLimiter = RateLimiter

--- RateLimiter.new(backend, allowance, interval): backend has
--- consume(key, amount, allowance, interval) -> boolean (a
--- RateLimitBackend); allowance: the most that may be consumed per key and
--- window (>= 1); interval: the window, in whole seconds (>= 1).
function RateLimiter.new(backend, allowance, interval)
    if type(backend) ~= "table" or type(backend.consume) ~= "function" then
        error("backend must be an instance of RateLimitBackend", 2)
    end
    if type(allowance) ~= "number" or allowance ~= allowance or allowance < 1 then
        error("minimum allowance is 1", 2)
    end
    if type(interval) ~= "number" or interval ~= interval or interval < 1 then
        error("minimum interval is 1", 2)
    end
    if not whole(interval) then error("interval must be a whole number of seconds", 2) end
    return setmetatable({ backend = backend, allowance = allowance, interval = interval }, RateLimiter)
end
M.new = RateLimiter.new

--- Consume `amount` (default 1) from key's allowance; raises a
--- RateLimitExceededException when the allowance of this window is spent.
function RateLimiter:consume(key, amount)
    if type(key) ~= "string" then error("consume: the key must be a string", 2) end
    if amount == nil then amount = 1 end
    if not whole(amount) then error("consume: the amount must be a whole number", 2) end
    if not self.backend:consume(key, amount, self.allowance, self.interval) then
        error(exceeded(key), 2)
    end
end

--------------------------------------------------------------------------------
-- RateLimiterContextFactory

local Factory = {}
Factory.__index = Factory

--- RateLimiterContextFactory(backend_factory, allowance, interval): for
--- add_to_context; backend_factory's make_object_for_context(name, span)
--- returns the request's back end (a RateLimitBackend).
function M.RateLimiterContextFactory(backend_factory, allowance, interval)
    if type(backend_factory) ~= "table" or type(backend_factory.make_object_for_context) ~= "function" then
        error("RateLimiterContextFactory: expected a context factory for the back end", 2)
    end
    -- (checks allowance and interval now, not on the first request)
    RateLimiter.new({ consume = function() end }, allowance, interval)
    return setmetatable({ backend_factory = backend_factory, allowance = allowance, interval = interval },
        Factory)
end

--- The request's RateLimiter.
function Factory:make_object_for_context(name, span)
    local backend = self.backend_factory:make_object_for_context(name, span)
    return RateLimiter.new(backend, self.allowance, self.interval)
end

--- The back end's runtime metrics (a client's pool gauges), if it has any.
function Factory:report_runtime_metrics(batch)
    local f = self.backend_factory
    if type(f.report_runtime_metrics) == "function" then f:report_runtime_metrics(batch) end
end

return M
