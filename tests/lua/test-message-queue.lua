-- baseplate.lib.message_queue on real POSIX queues: put and get wait on the
-- loop (other coroutines run meanwhile), time out with TimedOutError, block
-- outside a coroutine that may wait, and sizes above the system's limits
-- are refused with the limit named. A second process (bp-lua-test's own
-- binary is not needed: baseplate-mq, built next to it) reads and writes
-- the same queue.
local t = require("testlib")
local runtime = require("baseplate.runtime")
local mqlib = require("baseplate.lib.message_queue")

local NAME = "/bp-test-mq-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))

local function fresh(suffix, n, size)
    local name = NAME .. suffix
    local q = mqlib.MessageQueue(name, n or 2, size or 64)
    q:unlink() -- (gone once closed, even if the test fails)
    return q
end

local function class_of(fn, ...)
    local ok, err = pcall(fn, ...)
    t.ok(not ok, "expected an error")
    t.ok(mqlib.is_error(err), "a MessageQueueError: " .. tostring(err))
    return err.class, err
end

t.test("put then get, sizes as asked", function()
    local q = fresh("-a", 2, 64)
    t.eq(q.max_messages, 2)
    t.eq(q.max_message_size, 64)
    q:put("one")
    q:put("")
    t.eq(q:get(), "one")
    t.eq(q:get(), "")
    q:close()
    q:close() -- (twice: nothing)
    t.eq(class_of(q.get, q, 0), "MessageQueueError")
end)

t.test("a full queue: put times out with TimedOutError, the loop still turns", function()
    local q = fresh("-b", 1, 16)
    q:put("x")
    local ticks = 0
    runtime.spawn(function()
        for _ = 1, 5 do runtime.sleep(0.02); ticks = ticks + 1 end
    end)
    local t0 = runtime.now()
    local class, err = class_of(q.put, q, "y", 0.2)
    t.eq(class, "TimedOutError")
    t.ok(err.message:find("full", 1, true), err.message)
    t.ok(runtime.now() - t0 >= 0.19, "waited the timeout")
    t.ok(ticks >= 4, "other coroutines ran while put waited: " .. ticks)
    t.eq(class_of(q.put, q, "y", 0), "TimedOutError")
    q:close()
end)

t.test("an empty queue: get times out; a put from another coroutine wakes it", function()
    local q = fresh("-c", 2, 16)
    t.eq(class_of(q.get, q, 0.05), "TimedOutError")
    t.eq(class_of(q.get, q, 0), "TimedOutError")
    runtime.spawn(function() runtime.sleep(0.05); q:put("late") end)
    local t0 = runtime.now()
    t.eq(q:get(2), "late")
    t.ok(runtime.now() - t0 < 1, "woken by the put, not the timeout")
    -- a full queue's put is woken by a get
    q:put("1"); q:put("2")
    runtime.spawn(function() runtime.sleep(0.05); t.eq(q:get(), "1") end)
    q:put("3", 2)
    t.eq(q:get(), "2")
    t.eq(q:get(), "3")
    q:close()
end)

t.test("several waiters on one queue; close wakes a waiter with an error", function()
    local q = fresh("-d", 2, 16)
    local got = {}
    for i = 1, 3 do
        runtime.spawn(function() local m = q:get(2); got[#got + 1] = m .. i end)
    end
    runtime.sleep(0.01)
    q:put("a"); q:put("b")
    t.ok(t.wait_until(function() return #got == 2 end, 2), "two woken")
    q:put("c")
    t.ok(t.wait_until(function() return #got == 3 end, 2), "three woken: " .. t.fmt(got))
    local err
    runtime.spawn(function() local _; _, err = pcall(q.get, q) end)
    runtime.sleep(0.01)
    q:close()
    t.wait_until(function() return err ~= nil end, 2)
    t.ok(mqlib.is_error(err, "MessageQueueError"), tostring(err))
end)

t.test("oversized messages and bad arguments", function()
    local q = fresh("-e", 2, 8)
    local class, err = class_of(q.put, q, "123456789")
    t.eq(class, "MessageQueueError")
    t.ok(err.message:find("9 bytes is above the queue's limit of 8", 1, true), err.message)
    t.raises("message must be a string", q.put, q, 5)
    t.raises("timeout must be", q.get, q, -1)
    t.raises("max_messages must be a positive integer", mqlib.MessageQueue, NAME .. "-z", 0, 8)
    q:close()
end)

t.test("sizes above the system's limits: refused naming the limit, or shrunk with fallback", function()
    local limit = tonumber(io.open("/proc/sys/fs/mqueue/msg_max"):read("*l"))
    local _, err = class_of(mqlib.MessageQueue, NAME .. "-f", limit + 1, 64)
    t.ok(err.message:find("above this system's limit of " .. limit, 1, true), err.message)
    t.ok(err.message:find("/proc/sys/fs/mqueue/msg_max", 1, true), err.message)
    local q = mqlib.MessageQueue(NAME .. "-f", mqlib.DEFAULT_MAX_MESSAGES, mqlib.DEFAULT_MAX_MESSAGE_SIZE,
        { fallback = true })
    q:unlink()
    t.ok(q.max_messages <= limit and q.shrunk, "shrunk to the limit")
    q:close()
    local _, e2 = class_of(mqlib.MessageQueue, "no-slash", 1, 1)
    t.ok(e2.message:find("initial slash", 1, true), e2.message)
end)

t.test("outside a coroutine that may wait: get and put block within the timeout", function()
    local q = fresh("-g", 1, 16)
    local co = coroutine.wrap(function()
        t.ok(not runtime.can_wait())
        q:put("b")
        local t0 = require("ffi").C.bp_monotonic()
        local ok, err = pcall(q.put, q, "c", 0.1)
        t.ok(not ok and mqlib.is_error(err, "TimedOutError"), tostring(err))
        t.ok(require("ffi").C.bp_monotonic() - t0 >= 0.09, "blocked for the timeout")
        t.eq(q:get(0.1), "b")
        ok, err = pcall(q.get, q, 0.05)
        t.ok(not ok and mqlib.is_error(err, "TimedOutError"), tostring(err))
        return true
    end)
    t.ok(co())
    q:close()
end)

t.test("a request whose time ran out: a wait ends at once with TimedOutError", function()
    local core = require("baseplate.core")
    local q = fresh("-i", 1, 16)
    local errs = {}
    for i, timeout in ipairs({ 5, false }) do
        runtime.spawn(function()
            runtime.doom({ [coroutine.running()] = true }, core.ETIMEDOUT)
            local _, err = pcall(q.get, q, timeout or nil)
            errs[i] = err
        end)
    end
    t.ok(t.wait_until(function() return errs[1] and errs[2] end, 1), "both ended at once")
    t.ok(mqlib.is_error(errs[1], "TimedOutError"), tostring(errs[1]))
    t.ok(mqlib.is_error(errs[2], "TimedOutError"), tostring(errs[2]))
    q:close()
end)

t.test("two processes: baseplate-mq writes, this process reads (waiting on the loop)", function()
    local name = NAME .. "-h"
    local q = mqlib.MessageQueue(name, 2, 64)
    local bin = (os.getenv("BASEPLATE_BUILD_DIR") or "../../build") .. "/bin"
    -- four lines into a queue of two: the writer waits for this reader
    local cmd = string.format("(sleep 0.2; printf 'one\\ntwo\\nthree\\nfour\\n' | %s/baseplate-mq --write %s) &",
        bin, name)
    os.execute(cmd)
    local got = {}
    for i = 1, 4 do got[i] = q:get(5) end
    t.eq(got, { "one", "two", "three", "four" })
    q:put("to the reader")
    local f = io.popen(string.format("timeout 2 %s/baseplate-mq --read %s", bin, name))
    local out = f:read("*a")
    f:close()
    t.eq(out, "to the reader\n")
    q:unlink()
    q:close()
end)

t.done()
