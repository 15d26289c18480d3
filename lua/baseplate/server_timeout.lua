-- The server timeout observer (Baseplate.py's "Server Timeouts"): a request
-- past its time is ended at its next wait.
--
--   server_timeout.default = 200 milliseconds        (or infinite)
--   server_timeout.by_endpoint.is_healthy = 300 milliseconds
--   server_timeout.debug = true                      (tracebacks in the log)
--
-- Cost: requests of a Baseplate without these keys pay one nil check when
-- their job starts. With them, a request whose endpoint has a finite
-- timeout is appended to the queue of its timeout value (one queue per
-- distinct value: deadlines in a queue come in the order they were set,
-- so its head is its earliest) and unlinked when its job ends; one loop
-- timer (runtime.after) runs for the earliest head of all queues, and only
-- while some request has a deadline.
--
-- When a deadline passes, the request's span gets the tag timed_out=True,
-- the log line `Server timed out processing for 'NAME' after S seconds`
-- is written (with the coroutine's traceback when debug is on), and its
-- coroutine is doomed (runtime.doom): the wait it is in ends now with
-- ECANCELED, as does every wait it starts afterwards, so the client call,
-- sleep or pool wait it was in raises, its pool slot and connection go back
-- through the usual error paths, and the job answers 504 (HTTP) or a
-- TApplicationException (Thrift) whatever the handler returns
-- (M.timed_out). A handler that never waits cannot be interrupted: the
-- blocked-loop monitor reports it.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local log = require("baseplate.log")
require("baseplate.span") -- (its declarations: bp_span_name)

local C = core.C
local pairs, rawget, rawset, format = pairs, rawget, rawset, string.format
local huge = math.huge

local M = {}

local timeout_log = log.get_logger("baseplate.observers.timeout")

M.DEPRECATION = "No server_timeout.default configured. Defaulting to no timeout. "
    .. "Set the default timeout to 'infinite' or a timespan like '2 seconds'. "
    .. "This will become mandatory in Baseplate.py 2.0."
local warned = false

-- Deadline queues, one per timeout value: doubly linked entries
-- { co, what, name, seconds, deadline, prev, next, q }.
local queues = {}   -- seconds -> { head = , tail = }
local entries = {}   -- coroutine -> its entry (until its job ends)
local spare, nspare = {}, 0 -- entries to reuse (no table per request)
local count = 0     -- entries linked
local timer, timer_at -- the loop timer and the deadline it is set for

local function unlink(e)
    local q = e.q
    if e.prev then e.prev.next = e.next else q.head = e.next end
    if e.next then e.next.prev = e.prev else q.tail = e.prev end
    e.prev, e.next, e.q = false, false, false
    count = count - 1
end

local sweep

-- Set the timer for the earliest deadline. A timer set for a deadline
-- whose request has ended is left to fire (and set the next one): cancelling
-- it would cost a timer per request when requests come one at a time. It
-- does not keep the loop running (a stopping server ends without waiting
-- for it).
local function arm()
    local earliest = huge
    for _, q in pairs(queues) do
        if q.head and q.head.deadline < earliest then earliest = q.head.deadline end
    end
    if timer and timer_at == earliest then return end
    if timer then
        runtime.cancel(timer)
        timer = nil
    end
    if earliest < huge then
        timer_at = earliest
        timer = runtime.after(earliest - runtime.now(), sweep, true)
    end
end

local function expire(e, doomed)
    local what = e.what
    rawset(what, "_timed_out", e) -- (the job answers with a timeout, M.timed_out)
    local msg = format("Server timed out processing for '%s' after %0.2f seconds", e.name, e.seconds)
    rawset(e, "message", msg)
    local span = what.span
    if span then span:set_tag("timed_out", true) end
    -- (where the request was waiting: for the log with debug on, and for
    -- the error the span fails with, which Sentry reports)
    local tb = debug.traceback(e.co, msg)
    rawset(e, "traceback", tb)
    if e.debug then
        timeout_log:warning("%s", tb)
    else
        timeout_log:warning("%s", msg)
    end
    doomed[e.co] = true
end

sweep = function()
    timer = nil -- (it fired: it is gone)
    local now = runtime.now()
    local doomed, any = {}, false
    for _, q in pairs(queues) do
        local e = q.head
        while e and e.deadline <= now + 0.001 do
            local nxt = e.next
            unlink(e)
            entries[e.co] = nil
            local ok, err = pcall(expire, e, doomed)
            if not ok then timeout_log:error("server timeout: %s", tostring(err)) end
            any = true
            e = nxt
        end
    end
    if any then runtime.doom(doomed, core.ECANCELED) end
    arm()
end

local function on_job_start(co, what)
    local bp = rawget(what, "_bp")
    local cfg = bp and rawget(bp, "_server_timeout")
    if not cfg then return end
    local sp = C.bp_span_current()
    if sp == nil then return end
    local name = ffi.string(C.bp_span_name(sp))
    local seconds = cfg.by_endpoint[name]
    if seconds == nil then seconds = cfg.default end
    if seconds == nil or seconds == huge then return end
    local q = queues[seconds]
    if not q then
        q = {}
        queues[seconds] = q
    end
    local e
    if nspare > 0 then
        e = spare[nspare]
        spare[nspare] = nil
        nspare = nspare - 1
    else
        e = { co = false, what = false, name = false, seconds = 0, debug = false, deadline = 0,
              q = false, prev = false, next = false, message = false }
    end
    e.co, e.what, e.name, e.seconds, e.debug = co, what, name, seconds, cfg.debug
    e.deadline, e.q, e.prev = runtime.now() + seconds, q, q.tail
    if q.tail then q.tail.next = e else q.head = e end
    q.tail = e
    count = count + 1
    entries[co] = e
    if not timer or e.deadline < timer_at then arm() end
end

local function on_job_end(co)
    local e = entries[co]
    if not e then return end
    entries[co] = nil
    if e.q then
        unlink(e)
        e.co, e.what, e.message, e.traceback = false, false, nil, nil
        nspare = nspare + 1
        spare[nspare] = e
    end
end

--- The timeout that ended the request of context `what`, or nil: a table
--- with `message` ("Server timed out processing for …") and `seconds`.
function M.timed_out(what)
    return rawget(what, "_timed_out")
end

--- The error class a timed-out request's span fails with.
M.ERROR_CLASS = "ServerTimeout"

--- The error a timed-out request's span fails with (its observers, Sentry
--- among them, get it): class ServerTimeout, the log line's message, and
--- the traceback of where the request was waiting.
function M.error_of(timeout)
    return { class = M.ERROR_CLASS, message = timeout.message, traceback = timeout.traceback }
end

--- configure_observers' factory: server_timeout.default, .debug and
--- .by_endpoint.NAME (timespans or `infinite`).
function M.factory(bp, raw)
    local cfg = config.parse_config(raw, {
        server_timeout = {
            default = config.Optional(config.TimespanOrInfinite, nil),
            debug = config.Optional(config.Boolean, false),
            by_endpoint = config.DictOf(config.TimespanOrInfinite),
        },
    }).server_timeout
    for name, seconds in pairs(cfg.by_endpoint) do
        if not (seconds > 0) then
            error(config.ConfigurationError("server_timeout.by_endpoint." .. name, "must be above 0 seconds"), 0)
        end
    end
    if cfg.default ~= nil and not (cfg.default > 0) then
        error(config.ConfigurationError("server_timeout.default", "must be above 0 seconds"), 0)
    end
    if cfg.default == nil and not warned then
        warned = true
        timeout_log:warning("%s", M.DEPRECATION)
    end
    rawset(bp, "_server_timeout", { default = cfg.default, by_endpoint = cfg.by_endpoint, debug = cfg.debug })
    runtime.set_job_hooks(on_job_start, on_job_end)
    return true
end

--- How many requests have a deadline now (tests, the shell).
function M.pending()
    return count
end

return M
