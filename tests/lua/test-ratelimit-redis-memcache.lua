-- baseplate.lib.ratelimit against the real redis-server and memcached of
-- tests/services.sh: the counters' keys and TTLs as formats.md gives them
-- ("{prefix}{key}{floor(now / interval)}", 2 x interval), the allowance,
-- windows moved by the frozen test clock, the error, and the context
-- factories on a Baseplate's request context.
local t = require("testlib")
local baseplate = require("baseplate")
local testing = require("baseplate.testing")
local redis = require("baseplate.clients.redis")
local memcache = require("baseplate.clients.memcache")
local ratelimit = require("baseplate.lib.ratelimit")
local redis_backend = require("baseplate.lib.ratelimit.backends.redis")
local memcache_backend = require("baseplate.lib.ratelimit.backends.memcache")

local url = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL")
local ENDPOINT = assert(os.getenv("BP_TEST_MEMCACHED_ENDPOINT"), "BP_TEST_MEMCACHED_ENDPOINT")

local redis_pool = redis.pool_from_config({ ["r.url"] = url }, "r.")
local mc_pool = memcache.pool_from_config({ ["mc.endpoint"] = ENDPOINT }, "mc.")
local r = redis.monitored("r", nil, redis_pool)
local mc = memcache.monitored("mc", nil, mc_pool)

-- A key of its own for each run (the servers outlive the tests).
local run = string.format("%d%d:", os.time(), math.random(1e6))

local T0 = 1699999980 -- a multiple of 60 and of 10: windows start here

local backends = {
    redis = {
        backend = function(prefix) return redis_backend.new(r, prefix) end,
        factory = function(prefix) return redis_backend.RedisRateLimitBackendContextFactory(redis_pool, prefix) end,
        count = function(k) return tonumber(r:get(k)) end,
        ttl = function(k) return r:ttl(k) end,
    },
    memcache = {
        backend = function(prefix) return memcache_backend.new(mc, prefix) end,
        factory = function(prefix)
            return memcache_backend.MemcacheRateLimitBackendContextFactory(mc_pool, prefix)
        end,
        count = function(k) local v = mc:get(k) return v and tonumber(v) end,
        -- memcached's TTL is not readable; "mg key t" would be, but the
        -- client speaks the text protocol's classic commands: checked by
        -- moving past it below instead.
    },
}

for name, b in pairs(backends) do
    t.test(name .. ": the counter's key, its TTL, the allowance", function()
        local clock = testing.freeze_clock()
        clock:advance(T0 - baseplate.time())
        local rl = ratelimit.RateLimiter.new(b.backend(), 3, 60)
        local key = run .. name .. "-a"
        local counter = "rl:" .. key .. tostring(T0 / 60)
        rl:consume(key)
        t.eq(b.count(counter), 1, "rl:{key}{floor(now / interval)}")
        if b.ttl then
            local ttl = b.ttl(counter)
            t.ok(ttl > 110 and ttl <= 120, "TTL 2 x interval, got " .. tostring(ttl))
        end
        rl:consume(key, 2)
        t.eq(b.count(counter), 3)
        local ok, err = pcall(rl.consume, rl, key)
        t.eq(ok, false, "the fourth is over the allowance")
        t.ok(ratelimit.is_rate_limit_exceeded(err))
        t.eq(err.class, "RateLimitExceededException")
        t.eq(err.message, "Rate limit exceeded.")
        t.eq(tostring(err), "RateLimitExceededException: Rate limit exceeded.")
        -- a consume that is refused still counts (as Baseplate.py's)
        t.eq(b.count(counter), 4)
        -- other keys have their own allowance
        rl:consume(key .. "-other", 3)
        -- the next window starts afresh
        clock:advance(59.5)
        t.eq(pcall(rl.consume, rl, key), false, "still the same window")
        clock:advance(0.5)
        rl:consume(key, 3)
        t.eq(b.count("rl:" .. key .. tostring(T0 / 60 + 1)), 3)
        clock:reset()
    end)

    t.test(name .. ": a prefix of its own; an amount over the allowance at once", function()
        local clock = testing.freeze_clock()
        clock:advance(T0 - baseplate.time())
        local rl = ratelimit.RateLimiter.new(b.backend("mine:"), 5, 10)
        local key = run .. name .. "-b"
        t.eq(pcall(rl.consume, rl, key, 6), false)
        t.eq(b.count("mine:" .. key .. tostring(T0 / 10)), 6)
        t.eq(b.count("rl:" .. key .. tostring(T0 / 10)), nil)
        clock:reset()
    end)

    t.test(name .. ": the counter expires after 2 x interval", function()
        -- real time: a 1-second interval's counter lives 2 seconds
        local rl = ratelimit.RateLimiter.new(b.backend("exp:"), 100, 1)
        local key = run .. name .. "-c"
        local clock = testing.freeze_clock()
        local counter = "exp:" .. key .. string.format("%d", math.floor(baseplate.time()))
        rl:consume(key, 7)
        clock:reset()
        t.eq(b.count(counter), 7)
        t.ok(t.wait_until(function() return b.count(counter) == nil end, 4), "expired")
    end)

    t.test(name .. ": the context factory puts a RateLimiter on the request context", function()
        local bp = baseplate.Baseplate({ ["baseplate.service_name"] = "rl" })
        bp:add_to_context("ratelimiter", ratelimit.RateLimiterContextFactory(b.factory(), 2, 60))
        local recorder = testing.recorder()
        bp:register(recorder)
        local key = run .. name .. "-d"
        bp:server_context("limited", function(context)
            t.eq(getmetatable(context.ratelimiter), ratelimit.RateLimiter)
            context.ratelimiter:consume(key)
            context.ratelimiter:consume(key)
            local ok, err = pcall(context.ratelimiter.consume, context.ratelimiter, key)
            t.eq(ok, false)
            t.ok(ratelimit.is_rate_limit_exceeded(err))
        end)
        local names = {}
        for _, s in ipairs(recorder.spans) do names[#names + 1] = s.name end
        t.ok(#names >= 4, "a span for each call: " .. table.concat(names, ","))
    end)
end

t.test("bad arguments", function()
    local b = redis_backend.new(r)
    t.raises("minimum allowance is 1", ratelimit.RateLimiter.new, b, 0, 60)
    t.raises("minimum interval is 1", ratelimit.RateLimiter.new, b, 1, 0)
    t.raises("interval must be a whole number of seconds", ratelimit.RateLimiter.new, b, 1, 1.5)
    t.raises("backend must be an instance of RateLimitBackend", ratelimit.RateLimiter.new, {}, 1, 60)
    t.raises("minimum allowance is 1", ratelimit.RateLimiterContextFactory,
        redis_backend.RedisRateLimitBackendContextFactory(redis_pool), 0, 60)
    local rl = ratelimit.RateLimiter.new(b, 1, 60)
    t.raises("the key must be a string", rl.consume, rl, 42)
    t.raises("the amount must be a whole number", rl.consume, rl, "k", 0.5)
    t.raises("not implemented", require("baseplate.lib.ratelimit.backends").RateLimitBackend.consume)
end)

t.done()
