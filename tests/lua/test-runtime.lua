-- The coroutine scheduler: sleep yields to the loop, spawned work interleaves,
-- misuse raises clear errors.
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local core = require("baseplate.core")

t.test("core version and ABI", function()
    t.eq(core.ABI_VERSION, 4)
    t.ok(baseplate.version:match("^%d+%.%d+%.%d+$"), baseplate.version)
    t.eq(core.strerror(core.EINVAL), "invalid argument")
    t.eq(core.strerror(core.AGAIN), "operation in progress")
end)

t.test("sleep suspends only the caller", function()
    local order = {}
    local t0 = baseplate.now()
    runtime.spawn(function()
        baseplate.sleep(0.05)
        order[#order + 1] = "b"
    end)
    runtime.spawn(function()
        order[#order + 1] = "a"
    end)
    baseplate.sleep(0.1)
    order[#order + 1] = "c"
    t.eq(order, { "a", "b", "c" })
    local elapsed = baseplate.now() - t0
    t.ok(elapsed >= 0.09 and elapsed < 0.5, "elapsed " .. elapsed)
end)

t.test("many concurrent sleepers finish together", function()
    local done = 0
    local t0 = baseplate.now()
    for _ = 1, 500 do
        runtime.spawn(function()
            baseplate.sleep(0.05)
            done = done + 1
        end)
    end
    while done < 500 do baseplate.sleep(0.01) end
    t.ok(baseplate.now() - t0 < 1, "500 x 50 ms sleeps took " .. (baseplate.now() - t0))
end)

t.test("sleep(0) yields and returns", function()
    baseplate.sleep(0)
end)

t.test("sleep rejects bad arguments", function()
    t.raises("sleep: expected a non-negative number of seconds", baseplate.sleep, -1)
    t.raises("sleep: expected a non-negative number of seconds", baseplate.sleep, "1")
    t.raises("sleep: expected a non-negative number of seconds", baseplate.sleep, 0 / 0)
end)

t.test("waiting inside a user's own coroutine is a clear error", function()
    local co = coroutine.wrap(function()
        -- its yield would reach this test, not the scheduler: refused
        return pcall(baseplate.sleep, 0.01)
    end)
    local ok, err = co()
    t.eq(ok, false)
    t.ok(tostring(err):find("not inside coroutine.wrap/create", 1, true), tostring(err))
end)

t.test("spawn is exported and its work may wait", function()
    local done = false
    baseplate.spawn(function(x)
        baseplate.sleep(0.01)
        done = x
    end, "yes")
    t.eq(done, false)
    baseplate.sleep(0.05)
    t.eq(done, "yes")
end)

t.test("an error in spawned work does not stop the scheduler", function()
    runtime.spawn(function() error("boom in spawned work") end)
    baseplate.sleep(0.01)
end)

t.test("a sleep counts from when it starts, even after the loop was kept busy", function()
    baseplate.sleep(0) -- a fresh loop iteration: the loop's cached time is now
    local C = require("baseplate.core").C
    local function clock() return C.bp_monotonic() end
    local busy_until = clock() + 0.3
    while clock() < busy_until do end -- code that keeps the loop from waking
    local t0 = clock()
    baseplate.sleep(0.2)
    local slept = clock() - t0
    t.ok(slept >= 0.19, string.format("slept %.3f s of 0.2", slept))
end)

t.test("fatal() errors carry a plain message", function()
    local ok, err = pcall(runtime.fatal, "one line", 3)
    t.eq(ok, false)
    t.eq(runtime.message_of(err), "one line")
    t.eq(err.exit_code, 3)
end)

t.test("after calls a function from the loop; cancel stops it", function()
    local fired, cancelled = {}, false
    runtime.after(0.02, function(status) fired[#fired + 1] = status end)
    local h = runtime.after(0.02, function() cancelled = true end, true)
    runtime.cancel(h)
    baseplate.sleep(0.06)
    t.eq(fired, { core.ETIMEDOUT })
    t.eq(cancelled, false)
end)

t.test("doom ends a wait now, and every later wait at once", function()
    local got = {}
    local co
    runtime.spawn(function()
        co = coroutine.running()
        local ok, err = pcall(baseplate.sleep, 5)
        got[1] = tostring(err)
        local t0 = baseplate.now()
        ok, err = pcall(baseplate.sleep, 5)
        got[2] = tostring(err)
        got[3] = baseplate.now() - t0
    end)
    local t0 = baseplate.now()
    runtime.doom({ [co] = true }, core.ECANCELED)
    t.eq(got[1], "sleep: interrupted")
    t.eq(got[2], "sleep: interrupted")
    t.ok(got[3] < 0.01 and baseplate.now() - t0 < 0.01, "no waiting")
end)

t.test("random numbers: in [0, 1), and math.random seeded apart in each process", function()
    for _ = 1, 1000 do
        local r = runtime.random()
        t.ok(r >= 0 and r < 1, "out of [0, 1): " .. r)
    end
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write("print(string.format('%.17g', math.random()))\n")
    f:close()
    local bin = os.getenv("BASEPLATE_BUILD_DIR") .. "/bin/bp-lua-test"
    local function first() -- a fresh process's first math.random()
        local p = assert(io.popen(bin .. " " .. script .. " 2>&1"))
        local out = p:read("*l")
        p:close()
        return out
    end
    local a, b = first(), first()
    os.remove(script)
    t.ok(tonumber(a) and tonumber(b), "a number printed: " .. tostring(a))
    t.ok(a ~= b, "two processes drew the same first number " .. tostring(a))
end)

t.done()
