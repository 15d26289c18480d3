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

t.test("serialize_v2_event: byte for byte what Apache Thrift's Python TJSONProtocol writes", function()
    local codec = require("baseplate.thrift.codec")
    local ffi = require("ffi")
    local b = codec.base_type
    local inner = { name = "Inner", kind = "struct", fields = {
        { id = 1, name = "name", required = "default", type = b("string") },
        { id = 2, name = "n", required = "default", type = b("i32") },
    } }
    local event = { name = "Event", kind = "struct", fields = {
        { id = 1, name = "source", required = "default", type = b("string") },
        { id = 2, name = "action", required = "default", type = b("string") },
        { id = 3, name = "client_timestamp", required = "default", type = b("i64") },
        { id = 4, name = "flag", required = "default", type = b("bool") },
        { id = 5, name = "ratio", required = "default", type = b("double") },
        { id = 6, name = "tags", required = "default", type = { kind = "list", elem = b("string") } },
        { id = 7, name = "counts", required = "default", type = { kind = "map", key = b("string"), value = b("i32") } },
        { id = 8, name = "inner", required = "default", type = { kind = "struct", struct = inner } },
        { id = 9, name = "blob", required = "default", type = b("binary") },
        { id = 10, name = "small", required = "default", type = b("byte") },
        { id = 11, name = "imap", required = "default", type = { kind = "map", key = b("i32"), value = b("bool") } },
        { id = 12, name = "missing", required = "optional", type = b("string") },
        { id = 13, name = "ratios", required = "default", type = { kind = "list", elem = b("double") } },
    } }
    local handles = codec.compile({ inner, event })
    local Event = handles[event]
    local ev = Event:new({
        source = "baseplate", action = 'te"st\n/é', client_timestamp = ffi.new("int64_t", 1700000000123456LL),
        flag = true, ratio = 0.1, tags = { "a", "b" }, counts = { x = 3 }, inner = { name = "in", n = -7 },
        blob = "\0\255ab", small = -3, imap = { [5] = false }, ratios = { 1.0, 2.5, 1e300 },
    })
    local src = os.getenv("BASEPLATE_SOURCE_DIR") or "../.."
    local p = io.popen("/usr/bin/python3 " .. src .. "/tests/integration/tools/tjson_reference.py")
    local want = p:read("*a")
    p:close()
    t.ok(#want > 100, "the reference ran: " .. want)
    t.eq(events.serialize_v2_event(ev), want)
    t.eq(events.v2_serializer(Event)(ev), want, "a serializer for plain tables")
    -- into a queue, as a service does
    local name = NAME .. "-v2"
    local eq = events.EventQueue(name, events.serialize_v2_event)
    eq.queue:unlink()
    eq:put(ev)
    t.eq(eq.queue:get(0), want)
    eq:close()
    t.raises("not a Thrift struct value", events.serialize_v2_event, { source = "x" })
    t.raises("Event.flag: expected a boolean", events.serialize_v2_event, Event:new({ flag = 1 }))
    t.raises("Event.small: expected an integer in -128..127", events.serialize_v2_event, Event:new({ small = 300 }))
end)

t.done()
