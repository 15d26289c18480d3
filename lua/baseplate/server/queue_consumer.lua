-- The queue-consumer server: `[server:main] factory = baseplate.server.queue_consumer`.
--
-- Baseplate.py's QueueConsumerServer on the one loop: the [app:…] factory
-- returns a consumer factory (Kafka's, AMQP's, or one of the application's
-- own) that builds a pump and message handlers. The pump runs in its own
-- coroutine and feeds a bounded work queue; `max_concurrency` handler
-- coroutines take messages from it, each handling one message at a time.
-- The listening socket serves only the health check.
--
-- A consumer factory is a table with
--   factory:build_pump_worker(work_queue)  -> pump: pump:run() puts messages
--       with work_queue:put(message) (which waits while the queue is full)
--       until pump:stop() is called; optional pump:give_back(messages) gets
--       what was queued but not handled when the server stopped; optional
--       pump:close(timeout) runs once the handlers finished (or
--       stop_timeout passed): the source's own ending, within `timeout`
--   factory:build_message_handler()        -> handler: handler:handle(message)
--   factory.health_check_fn (optional)     -> function(env) returning true
--       when healthy (Baseplate.py's HealthcheckCallback)
--   factory.baseplate (optional)           -> its Baseplate, for the
--       runtime metrics
-- See docs/consumers.md.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local log = require("baseplate.log")
local config = require("baseplate.lib.config")
local base = require("baseplate.server.base")
local http = require("baseplate.http")
require("baseplate.server.http") -- bp_http_server_* declarations
require("baseplate.server") -- getpid, bp_process_signal

local C = core.C
local remove = table.remove

local M = {}
local qlog = log.get_logger("baseplate.server.queue_consumer")

--------------------------------------------------------------------------------
-- The work queue between the pump and the handlers

local WorkQueue = {}
WorkQueue.__index = WorkQueue
M.WorkQueue = WorkQueue

--- A FIFO of at most `maxsize` messages whose put waits while it is full
--- and whose get waits while it is empty (in the calling coroutine).
function WorkQueue.new(maxsize)
    if type(maxsize) ~= "number" or maxsize < 1 then error("WorkQueue: maxsize must be at least 1", 2) end
    return setmetatable({ items = {}, head = 1, tail = 0, maxsize = maxsize,
                          getters = {}, putters = {}, closed = false }, WorkQueue)
end

function WorkQueue:size() return self.tail - self.head + 1 end

local function start_wait(id, list)
    list[#list + 1] = id
    return core.AGAIN
end

local function forget(list, id)
    for i = #list, 1, -1 do
        if list[i] == id then
            remove(list, i)
            return
        end
    end
end

local function wake_first(list)
    if list[1] ~= nil then runtime.wake(remove(list, 1), core.OK) end
end

-- Wait in `list` until woken or `timeout` seconds (nil: no limit) pass.
local function wait_in(list, timeout)
    local rc, id
    if timeout then
        rc, id = runtime.await_timeout(timeout, start_wait, list)
        if rc ~= core.OK then forget(list, id) end
    else
        rc = runtime.await(start_wait, list)
    end
    return rc == core.OK
end

--- Add `message` (not nil), waiting while the queue is full. Returns true,
--- or false when the queue was closed (the server is stopping) or
--- `timeout` seconds passed.
function WorkQueue:put(message, timeout)
    if message == nil then error("WorkQueue:put: the message must not be nil", 2) end
    local deadline = timeout and runtime.now() + timeout
    while not self.closed and self:size() >= self.maxsize do
        local left = deadline and deadline - runtime.now()
        if left and left <= 0 then return false end
        wait_in(self.putters, left)
    end
    if self.closed then return false end
    self.tail = self.tail + 1
    self.items[self.tail] = message
    wake_first(self.getters)
    return true
end

--- The next message, waiting while the queue is empty; nil once the queue
--- is closed or after `timeout` seconds.
function WorkQueue:get(timeout)
    local deadline = timeout and runtime.now() + timeout
    while not self.closed and self:size() == 0 do
        local left = deadline and deadline - runtime.now()
        if left and left <= 0 then return nil end
        wait_in(self.getters, left)
    end
    if self.closed then return nil end
    local h = self.head
    local message = self.items[h]
    self.items[h] = nil
    self.head = h + 1
    wake_first(self.putters)
    return message
end

--- Close: every waiting put and get returns at once, later ones too.
--- Returns the messages still queued, oldest first.
function WorkQueue:close()
    if self.closed then return {} end
    self.closed = true
    local left = {}
    for i = self.head, self.tail do left[#left + 1] = self.items[i] end
    self.items, self.head, self.tail = {}, 1, 0
    local waiters = {}
    for _, id in ipairs(self.getters) do waiters[#waiters + 1] = id end
    for _, id in ipairs(self.putters) do waiters[#waiters + 1] = id end
    self.getters, self.putters = {}, {}
    for _, id in ipairs(waiters) do runtime.wake(id, core.OK) end
    return left
end

--------------------------------------------------------------------------------
-- A message's server span

--- Run `fn(context, ...)` as one message of Baseplate `bp`: a new request
--- context and a server span named `name` (continuing `trace_info`, a
--- baseplate.span TraceInfo or nil), tagged with `tags` (a table or nil),
--- finished with the error `fn` raises, which is raised again. A message
--- past its server timeout (server_timeout.default, .by_endpoint.NAME)
--- fails with the ServerTimeout error. The building block of every
--- consumer factory's message handler.
local function with_traceback(e)
    if type(e) == "string" then return debug.traceback(e, 2) end
    return e -- (a table error keeps its class and fields)
end

function M.handle_message(bp, name, trace_info, tags, fn, ...)
    local context = bp:make_context_object()
    local span = bp:make_server_span(context, name, trace_info)
    -- (entered for the whole message, its finish included: the metrics it
    -- sends and the log lines about it carry its trace ID)
    local prev = C.bp_span_current()
    runtime.set_span(span.c)
    span:start()
    if tags then
        for k, v in pairs(tags) do span:set_tag(k, v) end
    end
    runtime.serve_begin(context) -- (server timeouts, the SIGUSR1 dump)
    local ok, err = xpcall(fn, with_traceback, context, ...)
    local timed_out = rawget(context, "_timed_out")
    if timed_out then -- (past its time: a failure, whatever fn did)
        ok, err = false, require("baseplate.server_timeout").error_of(timed_out)
    end
    runtime.serve_end()
    if ok then span:finish() else span:finish(err) end
    runtime.set_span(prev)
    if not ok then error(err, 0) end
end

--------------------------------------------------------------------------------
-- The health check

-- Baseplate.py's HealthcheckApp answers, and the probes of the other servers.
local HEALTHY = '{"fun message": "all good, boss"}'
local UNHEALTHY = "he's dead jim"

local function health_app(factory, state)
    local app = http.app(nil, nil)
    local check = factory.health_check_fn
    local function health(request)
        local q = request.query.type
        local probe = base.PROBES[(q or "readiness"):lower()]
        if not probe then http.abort_error(400, "unknown probe type '" .. tostring(q) .. "'") end
        local ok = not (probe == "readiness" and state.shutting_down)
        if ok and check then
            local env = { method = request.method, path = request.path, query = request.query,
                          headers = request.headers, probe = probe }
            local called, healthy = pcall(check, env)
            if not called then
                qlog:error("health check failed: %s", tostring(healthy))
            end
            ok = called and healthy and true or false
        end
        if ok then return http.response({ status = 200, body = HEALTHY, content_type = "application/json" }) end
        return http.response({ status = 503, body = UNHEALTHY, content_type = "text/plain" })
    end
    app:get("health", "/health", health)
    app:get("health_root", "/", health)
    return app
end

--------------------------------------------------------------------------------
-- The server

-- The [server:…] keys (docs/consumers.md): the common ones, with
-- max_concurrency required and stop_timeout 30 seconds as in Baseplate.py.
M.spec = base.common_spec()
M.spec.max_concurrency = base.whole(1, 100000)
M.spec.stop_timeout = config.Optional(base.duration, 30)

--- serve's check of the [app:…] factory's result: a consumer factory.
function M.accepts_app(app)
    return type(app) == "table" and type(app.build_pump_worker) == "function"
        and type(app.build_message_handler) == "function",
        "a queue consumer factory (with build_pump_worker and build_message_handler)"
end

local Server = {}
Server.__index = Server

local FATAL = "Unhandled error in pump or handler thread, terminating."

-- Baseplate.py's watcher: a pump or handler that dies ends the server the
-- way a SIGTERM would (so the shutdown is the usual graceful one).
local function terminate(self, err)
    qlog:exception(FATAL, err and { traceback = tostring(err) } or nil)
    if not self.stopping then
        C.bp_process_signal(C.getpid(), 15)
    end
end

local function run_handler(self, handler)
    local queue = self.queue
    while not self.stopping do
        local message = queue:get()
        if message == nil then break end
        self.in_flight = self.in_flight + 1
        local ok, err = xpcall(handler.handle, debug.traceback, handler, message)
        self.in_flight = self.in_flight - 1
        if not ok then
            terminate(self, err)
            break
        end
    end
    self.running = self.running - 1
    if self.running == 0 and self.done_waiter then
        local w = self.done_waiter
        self.done_waiter = nil
        runtime.wake(w, core.OK)
    end
end

local function run_pump(self)
    local ok, err = xpcall(self.pump.run, debug.traceback, self.pump)
    if not self.stopping then
        -- (a pump returns only when stopped)
        terminate(self, ok and "the pump stopped by itself" or err)
    end
end

function M.make_server(server_config, listener, factory, opts)
    local cfg = config.parse_config(server_config, M.spec)
    local n = cfg.max_concurrency
    -- (as Baseplate.py: room for max_concurrency / 2 more, so a handler
    -- finds its next message waiting)
    local queue = WorkQueue.new(n + math.floor(n / 2))
    local self = setmetatable({ settings = cfg, config = server_config, app = factory, queue = queue,
                                in_flight = 0, running = 0, stopped = false, stopping = false }, Server)
    self.pump = factory:build_pump_worker(queue)
    if type(self.pump) ~= "table" or type(self.pump.run) ~= "function" or type(self.pump.stop) ~= "function" then
        error("build_pump_worker returned " .. type(self.pump) .. ", expected a pump with run and stop", 0)
    end
    self.handlers = {}
    for i = 1, n do
        local h = factory:build_message_handler()
        if type(h) ~= "table" or type(h.handle) ~= "function" then
            error("build_message_handler returned " .. type(h) .. ", expected a handler with handle", 0)
        end
        self.handlers[i] = h
    end

    -- The health check on the bound listener.
    if listener then
        local state = require("baseplate.server").SERVER_STATE
        local o = ffi.new("bp_http_server_options_t")
        C.bp_http_server_options_init(o)
        o.shared_socket = (opts and opts.shared_socket) and 1 or 0
        local app = health_app(factory, state)
        local c = C.bp_http_server_start(app.c, listener, o, core.errbuf, core.errbuf_size)
        if c == nil then error(core.errmsg(), 0) end
        self.health = base.wrap(c, { app = app, settings = cfg })
    end

    qlog:debug("Starting pump and %d message handlers.", n)
    self.running = n
    for i = 1, n do runtime.spawn(run_handler, self, self.handlers[i]) end
    runtime.spawn(run_pump, self)
    require("baseplate.server.monitoring").start(self, factory, cfg)
    return self
end

function Server:drain()
    -- (consuming goes on; readiness fails meanwhile: the health check reads
    -- SERVER_STATE.shutting_down)
end

local function start_done_wait(id, self)
    self.done_waiter = id
    return core.AGAIN
end

--- Stop the pump, let the handlers finish their messages (up to `timeout`
--- seconds), give back what was queued, stop the health check. Returns
--- true when every handler finished in time.
function Server:shutdown(timeout)
    if self.stopping then return true end
    self.stopping = true
    qlog:debug("Stopping pump.")
    local ok, err = pcall(self.pump.stop, self.pump)
    if not ok then qlog:error("stopping the pump failed: %s", tostring(err)) end
    local left = self.queue:close()
    if #left > 0 then
        if self.pump.give_back then
            local gave, gerr = pcall(self.pump.give_back, self.pump, left)
            if not gave then qlog:error("giving back %d messages failed: %s", #left, tostring(gerr)) end
        end
        qlog:debug("%d queued messages were not handled.", #left)
    end
    qlog:debug("Waiting for message handlers to drain.")
    local in_time = true
    local t0 = runtime.now()
    if self.running > 0 then
        local rc = runtime.await_timeout(timeout, start_done_wait, self)
        self.done_waiter = nil
        in_time = rc == core.OK
    end
    if self.pump.close then
        -- (the source's own ending: commit what was handled, leave a group;
        -- in what is left of stop_timeout, and at least a second)
        local time_left = math.max(timeout - (runtime.now() - t0), 1)
        local closed, cerr = pcall(self.pump.close, self.pump, time_left)
        if not closed then qlog:error("closing the pump failed: %s", tostring(cerr)) end
    end
    qlog:debug("Stopping healthcheck server.")
    if self.health then self.health:stop() end
    self.stopped = true
    return in_time
end

function Server:stop()
    if not self.stopping then
        self.stopping = true
        pcall(self.pump.stop, self.pump)
        self.queue:close()
        if self.health then self.health:stop() end
        self.stopped = true
    end
end

function Server:connections()
    return (self.health and not self.stopped) and self.health:connections() or 0
end

--- Messages being handled now.
function Server:active_requests()
    return self.in_flight
end

return M
