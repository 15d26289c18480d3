-- baseplate.lib.events on a real POSIX queue (/events-NAME): events put by
-- a handler through configure_context arrive on the queue serialized; the
-- reference's size and full-queue errors (formats.md "Events").
local t = require("testlib")
local cjson = require("cjson")
local events = require("baseplate.lib.events")
local mqlib = require("baseplate.lib.message_queue")
local baseplate = require("baseplate")

local NAME = "bp-test-ev-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))

local function reader(name)
    local q = mqlib.MessageQueue(events.queue_name(name), 1, 1) -- (exists: its sizes)
    return q
end

local function class_of(fn, ...)
    local ok, err = pcall(fn, ...)
    t.ok(not ok, "expected an error")
    t.ok(events.is_error(err), "an EventError: " .. tostring(err))
    return err.class, err
end

t.test("put: the serializer's bytes on /events-NAME; usable from a handler's context", function()
    local name = NAME .. "-a"
    local eq = events.EventQueue(name, cjson.encode)
    local r = reader(name)
    r:unlink()
    eq:put({ action = "test", n = 1 })
    t.eq(cjson.decode(r:get(0)), { action = "test", n = 1 })

    local bp = baseplate.Baseplate({})
    bp:configure_context({ events_test = eq })
    bp:server_context("handler", function(context)
        context.events_test:put({ action = "ctx" })
    end)
    t.eq(cjson.decode(r:get(0)), { action = "ctx" })
    r:close()
    eq:close()
end)

t.test("EventTooLargeError: above 102,400 bytes, or above what the system's queue holds", function()
    local name = NAME .. "-b"
    local eq = events.EventQueue(name, function(s) return s end)
    eq.queue:unlink()
    local class, err = class_of(eq.put, eq, string.rep("x", 102401))
    t.eq(class, "EventTooLargeError")
    t.eq(err.message, "Event is too large to send (102401 bytes)")
    t.eq(err.size, 102401)
    t.ok(events.is_error(err, "EventError"))
    local limit = eq.queue.max_message_size
    if limit < events.MAX_EVENT_SIZE then
        t.eq(class_of(eq.put, eq, string.rep("x", limit + 1)), "EventTooLargeError")
    end
    eq:put(string.rep("x", limit)) -- (the largest that fits goes)
    eq:close()
end)

t.test("EventQueueFullError: a full queue is an error at once, not a wait", function()
    local name = NAME .. "-c"
    local eq = events.EventQueue(name, function(s) return s end)
    eq.queue:unlink()
    for i = 1, eq.queue.max_messages do eq:put("e" .. i) end
    local t0 = require("baseplate.runtime").now()
    local class, err = class_of(eq.put, eq, "one too many")
    t.eq(class, "EventQueueFullError")
    t.eq(err.message, "The events queue is full.")
    t.ok(require("baseplate.runtime").now() - t0 < 0.05, "no wait")
    eq:close()
end)

t.test("bad arguments", function()
    t.raises("name must be", events.EventQueue, "a/b", cjson.encode)
    t.raises("event_serializer must be a function", events.EventQueue, "x", nil)
    local eq = events.EventQueue(NAME .. "-d", function() return 42 end)
    eq.queue:unlink()
    t.raises("serializer returned number", eq.put, eq, {})
    eq:close()
end)

t.done()
