-- Client time limits count from when the operation starts, not from when
-- the loop last woke. libuv measures a timer from its cached loop time: a
-- handler that computed (or blocked) for a while after the loop woke it
-- would arm its limit in the past, and the timer would fire before the
-- reply, which came in time, was read. Against the real servers of
-- tests/services.sh.
local t = require("testlib")
local core = require("baseplate.core")
require("baseplate.runtime") -- declares bp_monotonic
local redis = require("baseplate.clients.redis")
local postgres = require("baseplate.clients.postgres")

local C = core.C
local REDIS_URL = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL is set by ctest")
local PG_URL = assert(os.getenv("BP_TEST_PG_URL"), "BP_TEST_PG_URL is set by ctest")

-- Keep the loop busy for `seconds`, as a handler's computation would.
local function work(seconds)
    local t0 = C.bp_monotonic()
    while C.bp_monotonic() - t0 < seconds do end
end

-- Each check runs right after a wake-up from the loop (the first call of
-- the test connects), so the loop's clock is as old as the work.

t.test("redis: a command's socket_timeout counts from the command", function()
    local pool = redis.pool_from_config({ ["r.url"] = REDIS_URL, ["r.socket_timeout"] = "300 milliseconds" },
        "r.")
    local r = redis.monitored("r", nil, pool)
    t.eq(r:ping(), "PONG")
    for _ = 1, 3 do
        work(0.6)
        t.eq(r:ping(), "PONG", "the reply came within the limit")
    end
    t.eq(pool:stats().open, 1, "no connection was dropped for a timeout")
end)

t.test("postgres: a statement's timeout counts from the statement", function()
    -- the client's own limit is statement_timeout + 1 s (the server cancels
    -- at statement_timeout)
    local factory = postgres.PostgresClient():parse("db",
        { ["db.url"] = PG_URL, ["db.statement_timeout"] = "200 milliseconds" })
    local db = factory:make_object_for_context("db", nil)
    t.eq(db:query("SELECT 1 AS one")[1].one, 1)
    for _ = 1, 2 do
        work(1.5)
        t.eq(db:query("SELECT 2 AS two")[1].two, 2, "the result came within the limit")
    end
    t.eq(factory.pool:stats().open, 1, "no connection was dropped for a timeout")
end)

t.done()
