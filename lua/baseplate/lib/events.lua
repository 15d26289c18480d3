-- Events for the data pipeline, as Baseplate.py's baseplate.lib.events
-- (docs/lib-events.md): a handler serializes an event and puts it on the
-- POSIX queue /events-{name}; baseplate-event-publisher, a sidecar on the
-- same machine, sends the queue's events to the collector in batches.
--
--   local events = require("baseplate.lib.events")
--   bp:configure_context({ events_v2 = events.EventQueue("v2", my_serializer) })
--   -- in a handler:
--   context.events_v2:put(event)   -- EventTooLargeError, EventQueueFullError
--
-- A full queue is an error at once, never a wait: a handler must not stall
-- because the publisher cannot keep up.
local message_queue = require("baseplate.lib.message_queue")

local type, tostring, setmetatable, format = type, tostring, setmetatable, string.format

local M = {}

-- formats.md "Events": 10,000 messages of at most 102,400 bytes.
M.MAX_EVENT_SIZE = 102400
M.MAX_QUEUE_SIZE = 10000

--------------------------------------------------------------------------------
-- Errors: tables with class and message; class is "EventTooLargeError"
-- (with size) or "EventQueueFullError", both EventError.

local EventError = {}
EventError.__index = EventError
EventError.__tostring = function(self) return self.class .. ": " .. self.message end
M.EventError = EventError

local function new_error(class, message, extra)
    local e = setmetatable(extra or {}, EventError)
    e.class, e.message = class, message
    return e
end

--- An EventTooLargeError for an event of `size` bytes.
function M.EventTooLargeError(size)
    return new_error("EventTooLargeError", format("Event is too large to send (%d bytes)", size), { size = size })
end

--- An EventQueueFullError.
function M.EventQueueFullError()
    return new_error("EventQueueFullError", "The events queue is full.")
end

--- Whether `err` is one of this module's errors (of `class`, if given:
--- "EventTooLargeError", "EventQueueFullError"; "EventError" is any).
function M.is_error(err, class)
    return type(err) == "table" and getmetatable(err) == EventError
        and (class == nil or class == "EventError" or err.class == class)
end

--------------------------------------------------------------------------------
-- The queue

local EventQueue = {}
EventQueue.__index = EventQueue
M.EventQueueClass = EventQueue

local log
local function logger()
    if not log then log = require("baseplate.log").get_logger("baseplate.lib.events") end
    return log
end

--- The POSIX queue's name for event queue `name`.
function M.queue_name(name)
    return "/events-" .. name
end

--- A queue to hand events to the publisher: the POSIX queue
--- /events-{name}, created if missing with 10,000 messages of at most
--- 102,400 bytes, or as large as the system allows when those are above
--- its limits (a warning says so). `event_serializer(event)` returns the
--- bytes (a string) to send.
function M.EventQueue(name, event_serializer)
    if type(name) ~= "string" or name == "" or name:find("/", 1, true) then
        error("EventQueue: name must be a non-empty string without slashes", 2)
    end
    if type(event_serializer) ~= "function" and not (getmetatable(event_serializer) or {}).__call then
        error("EventQueue: event_serializer must be a function", 2)
    end
    local qname = M.queue_name(name)
    local ok, q = pcall(message_queue.MessageQueue, qname, M.MAX_QUEUE_SIZE, M.MAX_EVENT_SIZE,
        { fallback = true })
    if not ok then error(q, 2) end
    if q.shrunk then
        logger():warning("%s: this system's limits allow %d messages of at most %d bytes (asked: %d of %d);"
            .. " raise fs.mqueue.msg_max and msgsize_max in /proc/sys/fs/mqueue as root", qname,
            q.max_messages, q.max_message_size, M.MAX_QUEUE_SIZE, M.MAX_EVENT_SIZE)
    end
    return setmetatable({ name = name, queue = q, serialize_event = event_serializer }, EventQueue)
end

--- Serialize `event` and add it to the queue. Raises EventTooLargeError
--- when the serialized event is above 102,400 bytes (or the queue's own
--- message size, if the system made it smaller), EventQueueFullError when
--- the queue is full (the publisher is not keeping up). Never waits.
function EventQueue:put(event)
    if getmetatable(self) ~= EventQueue then error("put: call it as a method (queue:put(event))", 2) end
    local serialized = self.serialize_event(event)
    if type(serialized) ~= "string" then
        error("put: the event serializer returned " .. type(serialized) .. ", not a string", 2)
    end
    local size = #serialized
    if size > M.MAX_EVENT_SIZE or size > self.queue.max_message_size then
        error(M.EventTooLargeError(size), 2)
    end
    local ok, err = pcall(self.queue.put, self.queue, serialized, 0)
    if not ok then
        if message_queue.is_error(err, "TimedOutError") then error(M.EventQueueFullError(), 2) end
        error(err, 2)
    end
end

--- For configure_context / add_to_context: the queue itself is the
--- context attribute (as the reference's ContextFactory).
function EventQueue:make_object_for_context(_name, _span)
    return self
end

--- Close the POSIX queue (the garbage collector does too).
function EventQueue:close()
    self.queue:close()
end

EventQueue.__tostring = function(self)
    return format("EventQueue %s (%s)", self.name, tostring(self.queue))
end

return M
