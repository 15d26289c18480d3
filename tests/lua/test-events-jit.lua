-- The request path of events stays JIT-compiled: EventQueue:put (the
-- serializer, the size check, the non-blocking put of
-- baseplate.lib.message_queue) called many times from a handler-like loop,
-- with the queue drained as it fills, while LuaJIT's trace events are
-- watched. Traces must be compiled in baseplate.lib.events or
-- baseplate.lib.message_queue, and no NYI abort may happen there.
local t = require("testlib")
local events = require("baseplate.lib.events")
local jitwatch = require("jitwatch")

local NAME = "bp-test-evjit-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
local eq = events.EventQueue(NAME, function(e) return e.payload end)
eq.queue:unlink()
local q = eq.queue
local N = 5000
local put, got, full = 0, 0, 0

local watch = jitwatch.watch()
local ev = { payload = '{"action":"jit"}' }
for _ = 1, N do
    local ok, err = pcall(eq.put, eq, ev)
    if ok then
        put = put + 1
    elseif events.is_error(err, "EventQueueFullError") then
        full = full + 1
        -- the publisher's part: drain
        while true do
            local gok = pcall(q.get, q, 0)
            if not gok then break end
            got = got + 1
        end
    else
        error(err)
    end
end
watch.stop()
eq:close()

t.test("every event put, the full queue drained", function()
    t.ok(put > N - full - 1 and full > 0, string.format("put %d, full %d, got %d", put, full, got))
end)

t.test("the put path compiles to traces", function()
    local n = jitwatch.traces_in(watch.stops, "baseplate/lib/events.lua")
        + jitwatch.traces_in(watch.stops, "baseplate/lib/message_queue.lua")
    t.ok(n > 0, "no trace in baseplate.lib.events/message_queue; traces: " .. table.concat(watch.stops, ", "))
end)

-- Known and left ("return to lower frame": a trace that returns into a
-- pcall's frame): MessageQueue:put returning into EventQueue:put's pcall,
-- and runtime.can_wait's return.
local function known(a)
    return a:find("baseplate/lib/message_queue.lua:%d+ %-> .*NYI: return to lower frame") ~= nil
        or a:find("baseplate/runtime.lua:%d+ %-> .*NYI: return to lower frame") ~= nil
end

t.test("no other NYI aborts in baseplate's modules", function()
    t.eq(jitwatch.nyi(watch.aborts, known), {}, "NYI aborts")
end)

t.done()
