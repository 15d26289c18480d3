-- The coroutine scheduler. The C core calls into Lua only through the
-- functions below (on_message, on_wake, on_signal, start_main, main_result;
-- on_message also brings span events for the Lua observers, baseplate.span);
-- everything that waits (sleep now, clients later) parks its coroutine here
-- and is resumed by on_wake when the core finishes the operation.
local ffi = require("ffi")
local core = require("baseplate.core")

ffi.cdef([[
int bp_sleep(double seconds, int waiter);
typedef struct bp_timeout_s bp_timeout_t;
bp_timeout_t *bp_timeout_start(double seconds, int waiter);
void bp_timeout_cancel(bp_timeout_t *t);
void bp_timeout_unref(bp_timeout_t *t);
void bp_loop_stop(void);
double bp_now(void);
double bp_time(void);
double bp_monotonic(void);
uint64_t bp_random_id(void);
void bp_span_enter(struct bp_span_s *span);
struct bp_span_s *bp_span_current(void);
struct bp_span_s *bp_span_ref(struct bp_span_s *span);
void bp_span_unref(struct bp_span_s *span);
const int *bp_observer_events_pending(void);
]])

local C = core.C
local AGAIN = core.AGAIN
local co_create, co_resume, co_yield, co_running, co_status =
    coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local traceback = debug.traceback

local M = {}

-- Values a scheduled coroutine yields to whoever resumed it.
local WAIT = {} -- parked on a waiter; on_wake resumes it
local DONE = {} -- a pooled worker finished its job and is free again
M.WAIT = WAIT

-- How many span events wait for the Lua observers (baseplate.span delivers
-- them): a pointer, read without a call.
M.observe_pending = C.bp_observer_events_pending()

local waiting = {}   -- waiter id -> coroutine (or a function: M.after)
-- Coroutines whose wait is over for good (a server timeout ended their
-- request): every wait they start fails at once with the status here.
local doomed = setmetatable({}, { __mode = "k" })
local next_waiter = 0
local workers = setmetatable({}, { __mode = "k" }) -- coroutines the scheduler runs
local pool = {}      -- idle worker coroutines
local pool_n = 0
local POOL_MAX = 256

local log -- baseplate.log, loaded lazily (it requires this module's peers)
local function logger()
    if not log then log = require("baseplate.log").get_logger("baseplate.runtime") end
    return log
end

-- The span each parked coroutine works for (recorded by await): entered
-- while the coroutine runs again, so its log lines carry the trace ID.
local co_span = setmetatable({}, { __mode = "k" })

--- Enter span `c` (a bp_span_t*, or nil) for the running code: for code
--- that makes its own server span (scripts); requests are entered by the core.
function M.set_span(c)
    C.bp_span_enter(c)
end

--- Park the running coroutine until the core wakes `waiter`; returns the
--- status (and results) the core woke it with. `start` is called with the
--- waiter id and must return core.AGAIN, or another status to fail at once.
function M.await(start, a, b, c)
    local co, ismain = co_running()
    if co == nil or ismain or not workers[co] then
        -- A yield here would reach whoever resumed this coroutine, not the
        -- scheduler: refuse rather than lose the wake-up.
        error("cannot wait here: only code running in a request, a script or"
            .. " baseplate.spawn() can wait (not inside coroutine.wrap/create)", 3)
    end
    if doomed[co] then return doomed[co] end -- (its request timed out: no more waiting)
    next_waiter = next_waiter + 1
    if next_waiter >= 0x7fffffff then next_waiter = 1 end
    local id = next_waiter
    local rc = start(id, a, b, c)
    if rc ~= AGAIN then
        return rc
    end
    waiting[id] = co
    local sp = C.bp_span_current()
    if sp ~= nil then -- re-entered when it resumes (held until then)
        co_span[co] = ffi.gc(C.bp_span_ref(sp), C.bp_span_unref)
    end
    return co_yield(WAIT)
end

--- Whether the running code may wait (M.await): it runs in a request, a
--- script or baseplate.spawn(). Code that also works outside (the shell's
--- top level, a plain LuaJIT) blocks instead when this is false.
function M.can_wait()
    local co, ismain = co_running()
    return co ~= nil and not ismain and workers[co] == true
end

local ETIMEDOUT = core.ETIMEDOUT

local function start_limited(id, w)
    w.id = id
    local rc = w.start(id, w.a, w.b, w.c)
    if rc == AGAIN then
        w.timer = C.bp_timeout_start(w.seconds, id)
        if w.timer == nil then error("out of memory starting a timer", 0) end
    end
    return rc
end

--- M.await with a time limit: the wait ends with core.ETIMEDOUT after
--- `seconds` unless the operation woke it first. The operation must then
--- forget the waiter (its later wake is ignored anyway). Returns the status
--- and the waiter id.
function M.await_timeout(seconds, start, a, b, c)
    local w = { start = start, a = a, b = b, c = c, seconds = seconds }
    local rc = M.await(start_limited, w)
    if rc ~= ETIMEDOUT and w.timer then C.bp_timeout_cancel(w.timer) end
    return rc, w.id
end

local function start_sleep(id, seconds)
    local rc = C.bp_sleep(seconds, id)
    return rc
end

--- Suspend the current request/script for `seconds`; the loop serves others.
function M.sleep(seconds)
    if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
        error("sleep: expected a non-negative number of seconds", 2)
    end
    local rc = M.await(start_sleep, seconds)
    if rc ~= core.OK then
        error("sleep: " .. core.strerror(rc), 2)
    end
end

--- A random number in [0, 1) from the core's generator (seeded from the
--- OS in each process).
function M.random()
    return tonumber(C.bp_random_id() / 2048ULL) * (1 / 9007199254740992)
end

-- Lua's own math.random, seeded once per process (each worker is a
-- process of its own) so that no two start with the same sequence.
math.randomseed(tonumber(C.bp_random_id() % 4503599627370496ULL))

--- Loop time in seconds (monotonic).
function M.now()
    return C.bp_now()
end

--- Wall-clock time: seconds since the epoch, with a fraction.
function M.time()
    return C.bp_time()
end

-- A worker runs jobs (fn, a, b) one after another, yielding DONE in between.
local function worker(fn, a, b)
    while true do
        fn(a, b)
        fn, a, b = co_yield(DONE)
    end
end

-- An idle worker coroutine, or a new one.
local function take_worker()
    if pool_n > 0 then
        local co = pool[pool_n]
        pool[pool_n] = nil
        pool_n = pool_n - 1
        return co
    end
    local co = co_create(worker)
    workers[co] = true
    return co
end

-- What each running request coroutine serves, for the SIGUSR1 dump, and
-- since when (loop time), for the introspection endpoint.
local active = setmetatable({}, { __mode = "k" })
local active_since = setmetatable({}, { __mode = "k" })
local track_since = false -- (only when something shows the ages: set_track_ages)

--- Note when each request job starts (runtime.in_flight's ages): the
--- introspection endpoint turns it on; off, a request costs nothing more.
function M.set_track_ages(on)
    track_since = on and true or false
end

-- What a job serves (runtime.serving) may say what to do when the job dies
-- with an error outside its own protection: its metatable's __job_died is
-- called with it (baseplate.http answers the request, baseplate.thrift the
-- call: a client must not wait forever for a dead coroutine).
local function job_died_hook(serving)
    local mt = getmetatable(serving)
    return type(mt) == "table" and rawget(mt, "__job_died") or nil
end

-- Called with (coroutine, what it serves) when a request job starts and
-- when it ends (baseplate.server_timeout sets them; nil: nothing to do).
local job_start_hook, job_end_hook

--- Set the functions called as request jobs start (before they first
--- wait) and end: fn(co, what) each, or nil.
function M.set_job_hooks(on_start, on_end)
    job_start_hook, job_end_hook = on_start, on_end
end

-- Told of every coroutine that dies of an error (the Sentry observer):
-- fn(co, err, traceback).
local died_hook

--- Set the function told of a coroutine that died of an error.
function M.set_died_hook(fn)
    died_hook = fn
end

local function finish_resume(co, ok, what)
    if not ok then
        -- Jobs catch their own errors; this is a bug in baseplate itself,
        -- or a coroutine of baseplate.spawn that raised.
        local tb = traceback(co, tostring(what))
        logger():error("coroutine died: %s", tb)
        if died_hook then
            local hook_ok, err = pcall(died_hook, co, what, tb)
            if not hook_ok then logger():error("reporting a dead coroutine failed: %s", tostring(err)) end
        end
        local serving = active[co]
        active[co] = nil
        if job_end_hook and serving ~= nil then job_end_hook(co, serving) end
        local job_died = serving ~= nil and job_died_hook(serving)
        if job_died then
            local hook_ok, err = pcall(job_died, serving)
            if not hook_ok then logger():error("after a coroutine died: %s", tostring(err)) end
        end
    elseif what == DONE then
        if job_end_hook then
            local serving = active[co]
            if serving ~= nil then job_end_hook(co, serving) end
        end
        active[co] = nil -- it serves nothing any more
        if doomed[co] then doomed[co] = nil end
        if pool_n < POOL_MAX then
            pool_n = pool_n + 1
            pool[pool_n] = co
        end
    end
end

--- Run fn(a, b) in a coroutine now (reusing an idle one); it may wait.
local function spawn(fn, a, b)
    local co = take_worker()
    local prev = C.bp_span_current()
    local ok, what = co_resume(co, fn, a, b)
    C.bp_span_enter(prev) -- the span of whoever spawned it
    return finish_resume(co, ok, what)
end
M.spawn = spawn

--- Call fn(status) from the loop after `seconds` (no coroutine: fn must
--- not wait). Returns a handle for M.cancel, valid until fn is called.
--- `weak`: the timer alone does not keep the loop (the process) running.
function M.after(seconds, fn, weak)
    next_waiter = next_waiter + 1
    if next_waiter >= 0x7fffffff then next_waiter = 1 end
    local id = next_waiter
    local t = C.bp_timeout_start(seconds, id)
    if t == nil then error("out of memory starting a timer", 2) end
    if weak then C.bp_timeout_unref(t) end
    waiting[id] = fn
    return { t = t, id = id }
end

--- Stop a timer M.after started, before it fires.
function M.cancel(h)
    if waiting[h.id] then
        waiting[h.id] = nil
        C.bp_timeout_cancel(h.t)
    end
end

--- End the waits of the coroutines in `set` (a table coroutine -> true)
--- for good: each wait they are in, and every wait they start later,
--- fails with `status`. The coroutines resume now, one after another.
function M.doom(set, status)
    local ids = {}
    for co in pairs(set) do doomed[co] = status end
    for id, waiter in pairs(waiting) do
        if set[waiter] then ids[#ids + 1] = id end
    end
    table.sort(ids)
    for i = 1, #ids do M.on_wake(ids[i], status) end
end

--- End the wait of coroutine `co` now with `status` (it may go on, or
--- fail with the status as a timeout would); false if it is not waiting.
function M.interrupt(co, status)
    for id, waiter in pairs(waiting) do
        if waiter == co then
            M.on_wake(id, status)
            return true
        end
    end
    return false
end

-- C -> Lua: wake a parked coroutine. Also used from Lua to end a wait early
-- (a timeout); a later wake for the same waiter is then ignored.
function M.on_wake(waiter, status)
    local co = waiting[waiter]
    if not co then return end
    waiting[waiter] = nil
    if type(co) == "function" then return co(status) end -- (M.after)
    local prev = C.bp_span_current()
    local sp = co_span[co]
    if sp then
        co_span[co] = nil
        C.bp_span_enter(sp)
    end
    local ok, what = co_resume(co, status)
    C.bp_span_enter(prev)
    if sp then C.bp_span_unref(ffi.gc(sp, nil)) end
    return finish_resume(co, ok, what)
end
M.wake = M.on_wake

-- C -> Lua: a request for a Lua route. Set by baseplate.http when it loads.
-- The job each protocol runs for a message (bp__vm_dispatch's protocol
-- numbers, src/runtime.h).
M.PROTOCOL_HTTP = 1
M.PROTOCOL_THRIFT = 2
M.PROTOCOL_OBSERVE = 3 -- span events for the Lua observers (no handler, no coroutine)
local PROTOCOL_OBSERVE = M.PROTOCOL_OBSERVE
local jobs = {}

--- Register `fn(msg, handler)`, the job that handles a message of
--- `protocol` in a worker coroutine.
function M.set_job(protocol, fn)
    jobs[protocol] = fn
end

-- The worker a request job starts in, until the job first yields: what
-- serving() marks, without asking coroutine.running() (a builtin the JIT
-- leaves its trace for) on every request.
local starting

-- C -> Lua: a message of `protocol` for Lua handler `handler`. The core
-- entered the message's span and leaves it when this returns.
function M.on_message(protocol, msg, handler)
    if protocol == PROTOCOL_OBSERVE then
        -- Observers run here, outside any request's coroutine: they cannot
        -- wait (runtime.await raises), as a C observer cannot block.
        return require("baseplate.span").drain()
    end
    local co = take_worker()
    starting = co
    local ok, what = co_resume(co, jobs[protocol], msg, handler)
    starting = nil
    return finish_resume(co, ok, what)
end

--- For a request job, before it first waits: note that it serves `what`
--- (until it finishes).
function M.serving(what)
    if starting then
        active[starting] = what
        if track_since then active_since[starting] = C.bp_now() end
        if job_start_hook then job_start_hook(starting, what) end
    end
end

--- For a coroutine that serves one thing after another (a queue
--- consumer's message handlers): from now on it serves `what`, as a
--- request job does (the SIGUSR1 dump, server timeouts), until serve_end.
function M.serve_begin(what)
    local co = co_running()
    active[co] = what
    if track_since then active_since[co] = C.bp_now() end
    if job_start_hook then job_start_hook(co, what) end
end

--- The end of what serve_begin started: a timeout's doom is lifted, so the
--- coroutine's next message may wait again.
function M.serve_end()
    local co = co_running()
    local what = active[co]
    if what ~= nil and job_end_hook then job_end_hook(co, what) end
    active[co] = nil
    doomed[co] = nil
end

--- What is in flight now: a list of { what = (what the job serves),
--- age = seconds since it began (0 unless set_track_ages(true) was called
--- before it began), traceback = the coroutine's traceback }, oldest first
--- (the introspection endpoint).
function M.in_flight()
    local list, now = {}, C.bp_now()
    for co, what in pairs(active) do
        if co_status(co) ~= "dead" then
            local since = track_since and active_since[co] or now
            list[#list + 1] = { what = what, age = now - since, traceback = traceback(co) }
        end
    end
    table.sort(list, function(x, y) return x.age > y.age end)
    return list
end

--- Log the traceback of every coroutine serving something (SIGUSR1).
function M.dump_activity()
    local n = 0
    for co, what in pairs(active) do
        if co_status(co) ~= "dead" then
            n = n + 1
            logger():warning("in flight: %s\n%s", tostring(what), traceback(co))
        end
    end
    logger():warning("SIGUSR1: %d coroutine(s) in flight", n)
end

-- C -> Lua: a signal arrived (SIGINT, SIGTERM, SIGUSR2; SIGUSR1 always
-- dumps the in-flight coroutines). Handlers added with add_signal_handler
-- get (name, signum); with none, the core ends the process.
local signal_handlers = {}
function M.add_signal_handler(fn)
    signal_handlers[#signal_handlers + 1] = fn
end

-- Interactive tools (the shell) take every SIGINT as "stop what you are
-- doing"; otherwise a second SIGINT ends the process at once (in C).
local interactive = false

--- Make every SIGINT go to the signal handlers (none ends the process).
function M.set_interactive(on)
    interactive = on and true or false
end

function M.on_signal(signum, name)
    if name == "SIGUSR1" then
        local ok, err = pcall(M.dump_activity)
        if not ok then logger():error("SIGUSR1 dump failed: %s", tostring(err)) end
    end
    for i = 1, #signal_handlers do
        local ok, err = pcall(signal_handlers[i], name, signum)
        if not ok then logger():error("signal handler failed: %s", tostring(err)) end
    end
    return name == "SIGUSR1" or #signal_handlers > 0, interactive
end

-- The process's main function (baseplate-serve's start-up, a script...).
local main = { done = false, ok = true }

--- Errors meant for the user as they are (no traceback): tables with a message.
local function message_of(err)
    if type(err) == "table" then
        return tostring(err.message or err)
    end
    return tostring(err)
end
M.message_of = message_of

local function main_job(opts)
    local ok, res = xpcall(function()
        local mod = require(opts._main_module)
        return mod[opts._main_fn](opts)
    end, function(err)
        if type(err) == "table" then return err end
        return { message = tostring(err), traceback = traceback(tostring(err), 2) }
    end)
    main.done = true
    main.ok = ok
    if ok then
        main.code = type(res) == "number" and res or nil
    else
        main.err = res
        C.bp_loop_stop()
    end
end

function M.start_main(module, fn, opts)
    opts._main_module = module
    opts._main_fn = fn
    spawn(main_job, opts)
end

function M.main_result()
    if main.ok then
        return true, nil, main.code
    end
    local err = main.err
    local msg = message_of(err)
    if type(err) == "table" and err.traceback and os.getenv("BASEPLATE_TRACEBACK") then
        msg = err.traceback
    end
    return false, msg, type(err) == "table" and err.exit_code or 1
end

--- Raise an error that start-up prints as-is (one line, no traceback).
function M.fatal(msg, exit_code)
    error({ message = msg, exit_code = exit_code }, 0)
end

return M
