-- Policies for retrying an operation safely, as Baseplate.py's
-- baseplate.lib.retry (docs/lib-retry.md):
--
--   local retry = require("baseplate.lib.retry")
--   for attempt, time_remaining in retry.RetryPolicy.new(3, 1.0, 0.05):attempts() do
--       local ok = pcall(do_something, time_remaining)
--       if ok then break end
--   end
--
-- Each attempt yields its number (1, 2, …) and the seconds left of the
-- budget (nil without a budget); the loop ends when no attempt is left.
-- Backoff sleeps base * 2^(n-2) before attempt n (n >= 2), capped by the time
-- remaining, on the loop (baseplate.sleep: the coroutine yields). The budget
-- is measured on baseplate.now(), so a frozen test clock stops it.
local runtime = require("baseplate.runtime")

local type, setmetatable, tostring, min = type, setmetatable, tostring, math.min

local M = {}

local RetryPolicy = {}
RetryPolicy.__index = RetryPolicy
M.RetryPolicy = RetryPolicy

-- The module's clock and sleep (tests may replace them).
M.clock = runtime.now
M.sleep = runtime.sleep

local function check(name, v, integer)
    if v == nil then return nil end
    if type(v) ~= "number" or v ~= v or v == math.huge then
        error("RetryPolicy.new: " .. name .. " must be a number, not " .. tostring(v), 3)
    end
    if v < 0 then error("RetryPolicy.new: " .. name .. " must not be negative", 3) end
    if integer and v ~= math.floor(v) then error("RetryPolicy.new: " .. name .. " must be a whole number", 3) end
    return v
end

--- RetryPolicy.new(attempts, budget, backoff), or RetryPolicy.new{ attempts
--- = …, budget = …, backoff = … }: each constraint may be nil (no limit).
--- attempts: how many times the operation may be tried; budget: seconds
--- the service will wait in all; backoff: the base, in seconds, of the
--- exponential back-off between attempts.
function RetryPolicy.new(attempts, budget, backoff)
    if type(attempts) == "table" then
        attempts, budget, backoff = attempts.attempts, attempts.budget, attempts.backoff
    end
    return setmetatable({
        attempts_max = check("attempts", attempts, true),
        budget = check("budget", budget, false),
        backoff = check("backoff", backoff, false),
    }, RetryPolicy)
end

--- An iterator over the attempts: each step returns the attempt's number
--- and the seconds remaining of the budget (nil without one). Waits the
--- back-off before every attempt after the first.
function RetryPolicy:yield_attempts()
    local max, budget, base = self.attempts_max, self.budget, self.backoff
    local clock, sleep = M.clock, M.sleep
    local start = budget and clock()
    local n = 0
    return function()
        if max and n >= max then return nil end
        local remaining
        if budget then
            remaining = budget - (clock() - start)
            if remaining <= 0 then return nil end
        end
        n = n + 1
        if base and n > 1 then
            local delay = base * 2 ^ (n - 2)
            if remaining then
                delay = min(delay, remaining)
                remaining = remaining - delay
            end
            if delay > 0 then sleep(delay) end
        end
        return n, remaining
    end
end

--- The same iterator, by its shorter name: for n, remaining in p:attempts().
RetryPolicy.attempts = RetryPolicy.yield_attempts

--- A policy called is its iterator: for n, remaining in policy() do … end.
RetryPolicy.__call = RetryPolicy.yield_attempts

M.new = RetryPolicy.new

return M
