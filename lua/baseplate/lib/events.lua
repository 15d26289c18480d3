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

--------------------------------------------------------------------------------
-- The v2 serializer: a Thrift struct in Apache Thrift's JSON protocol
-- (TJSONProtocol), as Baseplate.py's serialize_v2_event writes it:
-- {"<field id>":{"<type>":<value>},...} with the types tf, i8, i16, i32,
-- i64, dbl, str, rec, lst, set, map.

local ffi = require("ffi")
local floor, huge = math.floor, math.huge
local concat = table.concat

local TNAME = {
    bool = "tf", byte = "i8", i8 = "i8", i16 = "i16", i32 = "i32", i64 = "i64", double = "dbl",
    string = "str", binary = "str", struct = "rec", list = "lst", set = "set", map = "map",
}

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
    ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_string(s)
    return '"' .. s:gsub('[%c"\\]', function(ch)
        return ESC[ch] or format("\\u%04x", ch:byte())
    end) .. '"'
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
    -- (Python's TJSONProtocol writes binary as padded base64)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local chunk = {}
        for k = 1, 4 do
            local v = floor(n / 2 ^ (18 - 6 * (k - 1))) % 64
            chunk[k] = B64:sub(v + 1, v + 1)
        end
        if not c then chunk[4] = "=" end
        if not b then chunk[3] = "=" end
        out[#out + 1] = concat(chunk)
    end
    return concat(out)
end

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

local function fail(path, msg)
    error(format("serialize_v2_event: %s: %s", path, msg), 0)
end

local function integer(v, path, lo, hi)
    if type(v) == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v)) then
        return (tostring(ffi.cast(int64_t, v)):gsub("LL$", ""))
    end
    if type(v) ~= "number" or v ~= floor(v) or (lo and (v < lo or v > hi)) then
        fail(path, "expected an integer" .. (lo and format(" in %d..%d", lo, hi) or "") .. ", got " .. tostring(v))
    end
    if v >= -2 ^ 53 and v <= 2 ^ 53 then return format("%d", v) end
    fail(path, "an integer beyond 2^53 must be an int64_t cdata")
end

local function double(v, path)
    if type(v) ~= "number" then fail(path, "expected a number, got " .. type(v)) end
    if v ~= v then return '"NaN"' end
    if v == huge then return '"Infinity"' end
    if v == -huge then return '"-Infinity"' end
    return format("%.17g", v) -- (Python's TJSONProtocol: '{0:.17g}')
end

local encode_struct

-- The JSON of value `v` of Thrift type `ty`; `key`: as a map key (a string).
local function encode_value(ty, v, path, key)
    local kind = ty.kind
    local out
    if kind == "bool" then
        if type(v) ~= "boolean" then fail(path, "expected a boolean, got " .. type(v)) end
        out = v and "1" or "0"
    elseif kind == "byte" or kind == "i8" then out = integer(v, path, -128, 127)
    elseif kind == "i16" then out = integer(v, path, -32768, 32767)
    elseif kind == "i32" then out = integer(v, path, -2147483648, 2147483647)
    elseif kind == "i64" then out = integer(v, path)
    elseif kind == "double" then
        out = double(v, path)
        if key and out:sub(1, 1) == '"' then return out end
    elseif kind == "string" then
        if type(v) ~= "string" then fail(path, "expected a string, got " .. type(v)) end
        return json_string(v)
    elseif kind == "binary" then
        if type(v) ~= "string" then fail(path, "expected a string, got " .. type(v)) end
        return '"' .. base64(v) .. '"'
    elseif kind == "struct" then
        if key then fail(path, "a struct cannot be a map key") end
        return encode_struct(ty.struct, v, path)
    elseif kind == "list" or kind == "set" then
        if key then fail(path, "a container cannot be a map key") end
        if type(v) ~= "table" then fail(path, "expected a table, got " .. type(v)) end
        local parts = { json_string(TNAME[ty.elem.kind]), nil }
        local items = {}
        if kind == "set" and #v == 0 and next(v) ~= nil then
            for k, present in pairs(v) do if present then items[#items + 1] = k end end
        else
            for i = 1, #v do items[i] = v[i] end
        end
        parts[2] = tostring(#items)
        for i = 1, #items do parts[i + 2] = encode_value(ty.elem, items[i], path .. "[" .. i .. "]") end
        return "[" .. concat(parts, ",") .. "]"
    elseif kind == "map" then
        if key then fail(path, "a container cannot be a map key") end
        if type(v) ~= "table" then fail(path, "expected a table, got " .. type(v)) end
        local pairs_out, n = {}, 0
        for k, x in pairs(v) do
            n = n + 1
            pairs_out[n] = encode_value(ty.key, k, path .. ".<key>", true) .. ":"
                .. encode_value(ty.value, x, path .. "." .. tostring(k))
        end
        return format("[%s,%s,%d,{%s}]", json_string(TNAME[ty.key.kind]), json_string(TNAME[ty.value.kind]),
            n, concat(pairs_out, ","))
    else
        fail(path, "unsupported type " .. tostring(kind))
    end
    if key then return '"' .. out .. '"' end
    return out
end

encode_struct = function(st, v, path)
    if type(v) ~= "table" then fail(path, "expected a table for struct " .. tostring(st.name)) end
    local parts = {}
    for _, f in ipairs(st.fields) do
        local x = v[f.name]
        if x == nil then
            if f.required == "required" then fail(path .. "." .. f.name, "required field missing") end
        else
            parts[#parts + 1] = format('"%d":{"%s":%s}', f.id, TNAME[f.type.kind],
                encode_value(f.type, x, path .. "." .. f.name))
        end
    end
    return "{" .. concat(parts, ",") .. "}"
end

--- A Thrift struct (a value made with Handle:new, or a plain table with
--- `handle`, a struct handle of baseplate.thrift) serialized in the Thrift
--- JSON protocol for the v2 event pipeline, as Baseplate.py's
--- serialize_v2_event. Raises naming the field when the value does not fit.
function M.serialize_v2_event(event, handle)
    local st = handle or require("baseplate.thrift.codec").struct_of(event)
    if not st then
        error("serialize_v2_event: the event is not a Thrift struct value (make it with Event:new{...},"
            .. " or pass the struct handle)", 2)
    end
    return encode_struct(st, event, st.name or "event")
end

--- A serializer for EventQueue: serialize_v2_event with struct `handle`.
function M.v2_serializer(handle)
    return function(event) return M.serialize_v2_event(event, handle) end
end

return M
