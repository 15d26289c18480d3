-- The rate limiter's back ends (Baseplate.py's
-- baseplate.lib.ratelimit.backends): a RateLimitBackend is any table with
--
--   backend:consume(key, amount, allowance, interval) -> boolean
--
-- that adds `amount` to key's counter of the current window and returns
-- whether the count is still within `allowance`. The Redis and memcache
-- ones are baseplate.lib.ratelimit.backends.redis and .memcache.
local M = {}

local RateLimitBackend = {}
RateLimitBackend.__index = RateLimitBackend
M.RateLimitBackend = RateLimitBackend

--- The interface: a back end that does not override it raises.
function RateLimitBackend.consume()
    error("RateLimitBackend:consume is not implemented", 2)
end

--- A back end's key prefix: `prefix`, or "rl:" when nil; raises, naming
--- `what`, for anything but a string.
function M.check_prefix(prefix, what)
    if prefix == nil then return "rl:" end
    if type(prefix) ~= "string" then error(what .. ": the prefix must be a string", 3) end
    return prefix
end

--- Make `cls` (a table of methods) a RateLimitBackend class.
function M.class(cls)
    cls.__index = cls
    return setmetatable(cls, { __index = RateLimitBackend })
end

return M
