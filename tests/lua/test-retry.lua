-- baseplate.lib.retry: RetryPolicy's attempts, budget and exponential
-- back-off, as Baseplate.py's (formats.md "Smaller pieces"). The budget runs
-- on baseplate.now(), so a frozen test clock drives it.
local t = require("testlib")
local baseplate = require("baseplate")
local testing = require("baseplate.testing")
local retry = require("baseplate.lib.retry")
local RetryPolicy = retry.RetryPolicy

local function collect(policy, on_attempt)
    local got = {}
    for n, remaining in policy:attempts() do
        got[#got + 1] = { n = n, remaining = remaining }
        if on_attempt then on_attempt(n) end
    end
    return got
end

-- Sleeps recorded and done by moving the frozen clock.
local function fake_sleep(clock)
    local slept = {}
    retry.sleep = function(s)
        slept[#slept + 1] = s
        clock:advance(s)
    end
    return slept
end

t.test("attempts: exactly that many, no time remaining without a budget", function()
    local got = collect(RetryPolicy.new(3))
    t.eq(#got, 3)
    for i = 1, 3 do
        t.eq(got[i].n, i)
        t.eq(got[i].remaining, nil)
    end
    t.eq(#collect(RetryPolicy.new(0)), 0, "no attempt at all")
    t.eq(#collect(RetryPolicy.new({ attempts = 2 })), 2, "keyword form")
end)

t.test("no constraint: attempts go on until the caller stops", function()
    local n = 0
    for i in RetryPolicy.new()() do -- (a policy called is its iterator)
        n = i
        if i == 50 then break end
    end
    t.eq(n, 50)
end)

t.test("budget: each attempt yields the time remaining; none once it is spent", function()
    local clock = testing.freeze_clock()
    local got = collect(RetryPolicy.new(nil, 10), function() clock:advance(3) end)
    t.eq(#got, 4)
    t.eq(got[1].remaining, 10)
    t.eq(got[2].remaining, 7)
    t.eq(got[3].remaining, 4)
    t.eq(got[4].remaining, 1)
    t.eq(#collect(RetryPolicy.new(nil, 0)), 0, "a zero budget allows nothing")
    -- attempts and budget together: whichever ends first
    t.eq(#collect(RetryPolicy.new(2, 10), function() clock:advance(1) end), 2)
    clock:reset()
end)

t.test("backoff: base * 2^(n-1) before each retry, capped by the time remaining", function()
    local clock = testing.freeze_clock()
    local slept = fake_sleep(clock)
    local got = collect(RetryPolicy.new(5, nil, 0.5))
    t.eq(#got, 5)
    t.eq(slept, { 0.5, 1, 2, 4 })
    t.eq(got[5].remaining, nil)

    slept = fake_sleep(clock)
    got = collect(RetryPolicy.new(nil, 5, 1))
    -- the time remaining is read before the sleep, which it then pays for:
    -- 5; 5 - sleep 1 = 4; (5 - 1) - sleep 2 = 2; (5 - 3) - sleep min(4, 2) = 0;
    -- then 5 - 5 = 0 left: no more attempts
    t.eq(slept, { 1, 2, 2 })
    t.eq(#got, 4)
    t.eq(got[1].remaining, 5)
    t.eq(got[2].remaining, 4)
    t.eq(got[3].remaining, 2)
    t.eq(got[4].remaining, 0)
    retry.sleep = baseplate.sleep
    clock:reset()
end)

t.test("backoff sleeps on the loop: real time passes, other coroutines run", function()
    local ran = false
    baseplate.spawn(function() ran = true end)
    local start = baseplate.now()
    local got = collect(RetryPolicy.new(3, nil, 0.02))
    local elapsed = baseplate.now() - start
    t.eq(#got, 3)
    t.ok(elapsed >= 0.055 and elapsed < 1, "slept 0.02 + 0.04, took " .. elapsed)
    t.ok(ran, "another coroutine ran while the policy slept")
end)

t.test("bad constraints are refused", function()
    t.raises("attempts must not be negative", RetryPolicy.new, -1)
    t.raises("attempts must be a whole number", RetryPolicy.new, 1.5)
    t.raises("budget must be a number", RetryPolicy.new, nil, "soon")
    t.raises("budget must not be negative", RetryPolicy.new, nil, -1)
    t.raises("backoff must be a number", RetryPolicy.new, nil, nil, 0 / 0)
end)

t.done()
