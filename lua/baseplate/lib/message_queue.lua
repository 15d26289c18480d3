-- POSIX message queues, as Baseplate.py's baseplate.lib.message_queue
-- (docs/lib-message-queue.md):
--
--   local message_queue = require("baseplate.lib.message_queue")
--   local mq = message_queue.MessageQueue("/my-queue", 10, 8096)
--   mq:put("hello")                 -- waits while the queue is full
--   local msg = mq:get(0.5)         -- waits at most 0.5 s while it is empty
--   mq:close()
--
-- In a request, a script or a spawned coroutine, put and get wait on the
-- event loop (the coroutine yields; the loop serves others). Elsewhere
-- (the shell's top level, a plain LuaJIT) they block, within the timeout.
-- Errors are MessageQueueError objects (err.class: "MessageQueueError" or
-- "TimedOutError"); message_queue.is_error(err) recognises them.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")

ffi.cdef([[
typedef struct bp_mq_s bp_mq_t;
int bp_mq_new(const char *name, long max_messages, long max_message_size, int fallback,
              bp_mq_t **out, char *err, size_t errlen);
long bp_mq_max_messages(const bp_mq_t *q);
long bp_mq_max_message_size(const bp_mq_t *q);
int bp_mq_shrunk(const bp_mq_t *q);
int bp_mq_send(bp_mq_t *q, const void *msg, size_t len);
int bp_mq_receive(bp_mq_t *q, const char **msg, size_t *len);
int bp_mq_wait(bp_mq_t *q, int writable, int waiter);
void bp_mq_forget(bp_mq_t *q, int waiter);
int bp_mq_wait_blocking(bp_mq_t *q, int writable, double timeout);
int bp_mq_unlink(const char *name);
void bp_mq_close(bp_mq_t *q);
]])

local C = core.C
local OK, AGAIN, ETIMEDOUT, ETOOBIG = core.OK, core.AGAIN, core.ETIMEDOUT, core.ETOOBIG
local type, tostring, setmetatable, format = type, tostring, setmetatable, string.format

local M = {}

M.DEFAULT_MAX_MESSAGES = 10000
M.DEFAULT_MAX_MESSAGE_SIZE = 102400

--------------------------------------------------------------------------------
-- Errors

local MessageQueueError = {}
MessageQueueError.__index = MessageQueueError
MessageQueueError.__tostring = function(self) return self.class .. ": " .. self.message end
M.MessageQueueError = MessageQueueError

local function new_error(class, message, extra)
    local e = setmetatable(extra or {}, MessageQueueError)
    e.class, e.message = class, message
    return e
end
M.new_error = new_error

--- Whether `err` is one of this module's errors (of `class`, if given).
function M.is_error(err, class)
    return type(err) == "table" and getmetatable(err) == MessageQueueError
        and (class == nil or err.class == class)
end

--- The class name of the timeout error; TimeoutError is the same class
--- (the reference documents both names).
M.TimedOutError = "TimedOutError"
M.TimeoutError = M.TimedOutError

--------------------------------------------------------------------------------
-- The queue

local MessageQueue = {}
MessageQueue.__index = MessageQueue
M.MessageQueueClass = MessageQueue

local qcell = ffi.new("bp_mq_t *[1]")
local msg_cell, len_cell = ffi.new("const char *[1]"), ffi.new("size_t[1]")

local function check_sizes(name, n, what)
    if type(n) ~= "number" or n ~= math.floor(n) or n < 1 then
        error(format("MessageQueue(%s): %s must be a positive integer", tostring(name), what), 3)
    end
end

--- Open the queue `name` (an initial slash, then up to 254 characters,
--- none a slash), creating it with room for max_messages of at most
--- max_message_size bytes. opts.fallback: when those are above the
--- system's limits, make it as large as they allow (else a
--- MessageQueueError naming the limit).
function M.MessageQueue(name, max_messages, max_message_size, opts)
    if type(name) ~= "string" then error("MessageQueue: name must be a string", 2) end
    check_sizes(name, max_messages, "max_messages")
    check_sizes(name, max_message_size, "max_message_size")
    local fallback = opts and opts.fallback and 1 or 0
    local rc = C.bp_mq_new(name, max_messages, max_message_size, fallback, qcell,
        core.errbuf, core.errbuf_size)
    if rc ~= OK then
        error(new_error("MessageQueueError", core.errmsg(), { name = name, status = rc }), 2)
    end
    local q = ffi.gc(qcell[0], C.bp_mq_close)
    return setmetatable({
        name = name, _q = q,
        max_messages = tonumber(C.bp_mq_max_messages(q)),
        max_message_size = tonumber(C.bp_mq_max_message_size(q)),
        shrunk = C.bp_mq_shrunk(q) ~= 0,
    }, MessageQueue)
end
M.new = M.MessageQueue

local function check_timeout(timeout, what)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
        error(what .. ": timeout must be nil or a non-negative number of seconds", 3)
    end
end

local function live(self, what)
    if getmetatable(self) ~= MessageQueue then error(what .. ": call it as a method (mq:" .. what .. "(...))", 3) end
    local q = self._q
    if q == nil then error(new_error("MessageQueueError", self.name .. ": the queue is closed"), 3) end
    return q
end

local function start_wait(id, q, writable)
    return C.bp_mq_wait(q, writable, id)
end

-- Wait until q may be written (writable 1) or read (0), at most `left`
-- seconds (nil: no limit): on the loop when the running code may wait, else
-- blocking. Returns true, or false when the time ran out.
local function wait(self, q, writable, left, what)
    local rc, id
    if runtime.can_wait() then
        if left then
            rc, id = runtime.await_timeout(left, start_wait, q, writable)
            if rc == ETIMEDOUT then
                if id then C.bp_mq_forget(q, id) end -- (nil: a timed-out request's wait never started)
                return false
            end
        else
            rc = runtime.await(start_wait, q, writable)
            if rc == ETIMEDOUT then return false end -- (the request's own time ran out)
        end
    else
        rc = C.bp_mq_wait_blocking(q, writable, left or -1)
        if rc == ETIMEDOUT then return false end
    end
    if rc ~= OK then
        error(new_error("MessageQueueError", format("%s: %s: %s", self.name, what, core.strerror(rc)),
            { name = self.name, status = rc }), 0)
    end
    return true
end

-- The clock for deadlines: the loop's, or, for code that blocks (the loop
-- does not turn meanwhile), a fresh reading.
local function clock_for()
    if runtime.can_wait() then return runtime.now end
    return C.bp_monotonic
end

--- Add `message` (a string of at most max_message_size bytes) to the queue.
--- While the queue is full, wait up to `timeout` seconds (nil: no limit;
--- 0: not at all), then raise TimedOutError.
function MessageQueue:put(message, timeout)
    local q = live(self, "put")
    if type(message) ~= "string" then error("put: message must be a string", 2) end
    check_timeout(timeout, "put")
    local clock = clock_for()
    local deadline = timeout and (clock() + timeout) or nil
    while true do
        local rc = C.bp_mq_send(q, message, #message)
        if rc == OK then return end
        if rc == ETOOBIG then
            error(new_error("MessageQueueError", format("%s: message of %d bytes is above the queue's limit of %d",
                self.name, #message, self.max_message_size), { name = self.name, status = rc, size = #message }), 2)
        end
        if rc ~= AGAIN then
            error(new_error("MessageQueueError", format("%s: put: %s", self.name, core.strerror(rc)),
                { name = self.name, status = rc }), 2)
        end
        local left = deadline and (deadline - clock()) or nil
        if (left and left <= 0) or not wait(self, q, 1, left, "put") then
            error(new_error("TimedOutError", format("%s: the queue stayed full%s", self.name,
                timeout and format(" for %gs", timeout) or " (timed out)"), { name = self.name }), 2)
        end
    end
end

--- Take a message (a string) from the queue. While the queue is empty,
--- wait up to `timeout` seconds (nil: no limit; 0: not at all), then raise
--- TimedOutError.
function MessageQueue:get(timeout)
    local q = live(self, "get")
    check_timeout(timeout, "get")
    local clock = clock_for()
    local deadline = timeout and (clock() + timeout) or nil
    while true do
        local rc = C.bp_mq_receive(q, msg_cell, len_cell)
        if rc == OK then return ffi.string(msg_cell[0], len_cell[0]) end
        if rc ~= AGAIN then
            error(new_error("MessageQueueError", format("%s: get: %s", self.name, core.strerror(rc)),
                { name = self.name, status = rc }), 2)
        end
        local left = deadline and (deadline - clock()) or nil
        if (left and left <= 0) or not wait(self, q, 0, left, "get") then
            error(new_error("TimedOutError", format("%s: the queue stayed empty%s", self.name,
                timeout and format(" for %gs", timeout) or " (timed out)"), { name = self.name }), 2)
        end
    end
end

--- Remove the queue from the system: it goes once its last user closes it.
function MessageQueue:unlink()
    if getmetatable(self) ~= MessageQueue then error("unlink: call it as a method (mq:unlink())", 2) end
    local rc = C.bp_mq_unlink(self.name)
    if rc ~= OK and rc ~= core.ENOENT then
        error(new_error("MessageQueueError", format("%s: unlink: %s", self.name, core.strerror(rc)),
            { name = self.name, status = rc }), 2)
    end
end

--- Close the queue, freeing what it holds (a coroutine still waiting on it
--- gets a MessageQueueError). Closing twice does nothing.
function MessageQueue:close()
    if getmetatable(self) ~= MessageQueue then error("close: call it as a method (mq:close())", 2) end
    local q = self._q
    if q == nil then return end
    self._q = nil
    C.bp_mq_close(ffi.gc(q, nil))
end

MessageQueue.__tostring = function(self)
    return format("MessageQueue %s (%d messages of at most %d bytes)", self.name, self.max_messages,
        self.max_message_size)
end

--------------------------------------------------------------------------------
-- baseplate-mq (src/cli/mq.c parses the command line)

local function tool_int(opts, key, default)
    local v = opts[key]
    if v == nil then return default end
    local n = tonumber(v)
    if not n or n ~= math.floor(n) or n < 1 then
        runtime.fatal(format("argument --%s: invalid positive integer value: '%s'", key:gsub("_", "-"), v), 2)
    end
    return n
end

--- baseplate-mq's main. opts: queue_name, mode ("create", "read",
--- "write"), max_messages, max_message_size.
function M.tool_main(opts)
    local max_messages = tool_int(opts, "max_messages", 10)
    local max_message_size = tool_int(opts, "max_message_size", 8096)
    local ok, mq = pcall(M.MessageQueue, opts.queue_name, max_messages, max_message_size)
    if not ok then runtime.fatal(tostring(mq)) end
    if opts.mode == "read" then
        while true do
            io.stdout:write(mq:get(), "\n")
            io.stdout:flush()
        end
    elseif opts.mode == "write" then
        for line in io.stdin:lines() do
            mq:put(line)
        end
    end
    mq:close()
    return 0
end

return M
