-- The AMQP consumer factory for baseplate.server.queue_consumer:
-- Baseplate.py's KombuQueueConsumerFactory on rabbitmq-c and the loop.
--
--   local amqp = require("baseplate.frameworks.queue_consumer.amqp")
--   function M.make_consumer_factory(app_config)
--       local bp = baseplate.Baseplate(app_config)
--       bp:configure_observers()
--       return amqp.KombuQueueConsumerFactory.new({
--           baseplate = bp,
--           connection = amqp.connection_from_config(app_config, "amqp."),
--           exchange = amqp.exchange_from_config(app_config, "amqp."),
--           queue_name = "process_links_q",
--           routing_keys = { "link_created" },
--           handler_fn = function(context, body, message) ... end,
--       })
--   end
--
-- The pump declares the exchange, the queue and its bindings, sets the
-- prefetch to the work queue's size (max_concurrency + max_concurrency / 2)
-- and consumes; each message runs in a server span named after the queue;
-- a message is acknowledged after its handler returned, and a failed one
-- goes to the error handler (default: requeue). A lost connection is
-- reconnected; messages it delivered that were not handled yet are
-- dropped from the work queue (the broker has put them back and delivers
-- them again). See docs/consumers.md.
local amqp = require("baseplate.clients.amqp")
local qc = require("baseplate.server.queue_consumer")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local log = require("baseplate.log")
local span_mod = require("baseplate.span")

local M = {}
local alog = log.get_logger("baseplate.frameworks.queue_consumer.amqp")

M.connection_from_config = amqp.connection_from_config
M.exchange_from_config = amqp.exchange_from_config

--------------------------------------------------------------------------------
-- Errors

--- Raise FatalMessageHandlerError(message) from a handler (or an error
--- table with class "FatalMessageHandlerError"): after the error handler
--- ran, the error ends the handler and so the server (graceful shutdown).
local Fatal = {}
Fatal.__index = Fatal
Fatal.__tostring = function(e) return "FatalMessageHandlerError: " .. tostring(e.message) end
function M.FatalMessageHandlerError(message)
    return setmetatable({ class = "FatalMessageHandlerError", message = message }, Fatal)
end
local function is_fatal(err)
    return type(err) == "table" and (getmetatable(err) == Fatal or err.class == "FatalMessageHandlerError")
end
M.is_fatal = is_fatal

--------------------------------------------------------------------------------
-- Messages

local Message = {}
Message.__index = Message
M.Message = Message

-- A delivery of `conn` as the handler sees it (kombu.Message's role).
local function new_message(conn, d, serializer)
    d.conn = conn
    d.serializer = serializer
    d.delivery_info = { delivery_tag = d.delivery_tag, routing_key = d.routing_key, exchange = d.exchange,
                        consumer_tag = d.consumer_tag, redelivered = d.redelivered }
    d.settled = false
    return setmetatable(d, Message)
end

--- Whether the connection it came on is gone (the broker has requeued it).
function Message:stale()
    return self.conn:broken()
end

--- The body, deserialized: by the factory's serializer, else by the one
--- registered for the message's content type, else JSON.
function Message:decode()
    local s = self.serializer or amqp.serializer(self.content_type or "") or amqp.JSON
    return s.deserialize(self.body)
end

local function settle(self, what, ok, err)
    self.settled = true
    if not ok then
        alog:warning("%s of message %d (%s) not sent: %s; the broker delivers it again", what,
            self.delivery_tag, self.routing_key, tostring(err))
    end
    return ok
end

function Message:ack()
    if self.settled then return true end
    return settle(self, "ack", self.conn:ack(self.delivery_tag))
end

--- Back to the queue (delivered again, possibly to another consumer).
function Message:requeue()
    if self.settled then return true end
    return settle(self, "requeue", self.conn:reject(self.delivery_tag, true))
end

--- Refused for good (dropped, or dead-lettered when the queue says so).
function Message:reject()
    if self.settled then return true end
    return settle(self, "reject", self.conn:reject(self.delivery_tag, false))
end

--------------------------------------------------------------------------------
-- Trace context from the message's headers (as the producer sends them)

local TRACE_KEYS = { ["x-trace"] = "trace_id", ["x-span"] = "span_id", ["x-parent"] = "parent_id",
                     ["x-sampled"] = "sampled", ["x-flags"] = "flags" }

--- A TraceInfo from headers X-Trace, X-Span, X-Parent, X-Sampled and
--- X-Flags (any case), or nil (a new trace) when there is none or they are
--- invalid.
function M.trace_info_from_headers(headers)
    local t
    for k, v in pairs(headers) do
        local f = TRACE_KEYS[k:lower()]
        if f then
            t = t or {}
            t[f] = v
        end
    end
    if not t or not t.trace_id or not t.span_id then return nil end
    local sampled
    if t.sampled == "1" or t.sampled == "true" then sampled = true
    elseif t.sampled == "0" or t.sampled == "false" then sampled = false end
    local flags = t.flags and tonumber(t.flags)
    local ok, ti = pcall(span_mod.TraceInfo.from_upstream, t.trace_id, t.parent_id, t.span_id, sampled, flags)
    if not ok then
        alog:debug("ignoring invalid trace headers: %s", tostring(ti))
        return nil
    end
    return ti
end

--------------------------------------------------------------------------------
-- The pump

local Pump = {}
Pump.__index = Pump

local function setup(self, conn)
    local f = self.factory
    local ex = f.exchange
    if ex and ex.name ~= "" then conn:declare_exchange(ex.name, ex.type, f.exchange_durable, false) end
    conn:declare_queue(f.queue_name, f.queue_durable, false, f.queue_auto_delete)
    if ex and ex.name ~= "" then
        for _, key in ipairs(f.routing_keys) do conn:bind(f.queue_name, ex.name, key) end
    end
    conn:qos(self.prefetch)
    conn:consume(f.queue_name)
end

local function connect(self)
    local conn = amqp.connect(self.factory.connection)
    local ok, err = pcall(setup, self, conn)
    if not ok then
        conn:close()
        error(err, 0)
    end
    return conn
end

function Pump:run()
    local backoff = 0.1
    local queue = self.work_queue
    while not self.stopped do
        local ok, conn = pcall(connect, self)
        if not ok then
            if self.stopped then return end
            alog:warning("%s: cannot consume: %s; retrying in %gs", self.factory.queue_name, tostring(conn), backoff)
            pcall(runtime.sleep, backoff)
            backoff = math.min(backoff * 2, self.factory.max_backoff)
        else
            if self.connections > 0 then
                alog:info("%s: consuming again on a new connection", self.factory.queue_name)
            end
            self.connections = self.connections + 1
            backoff = 0.1
            self.conn = conn
            while not self.stopped do
                local got, d = pcall(conn.next_delivery, conn)
                if not got then
                    alog:warning("%s: %s; reconnecting", self.factory.queue_name, tostring(d))
                    break
                end
                if d == nil then break end -- (stopped)
                local message = new_message(conn, d, self.factory.serializer)
                if not queue:put(message) then
                    -- (the server is stopping: back to the broker)
                    message:requeue()
                    break
                end
            end
            if self.stopped then return end
            self.conn = nil
            conn:close()
        end
    end
end

function Pump:stop()
    self.stopped = true
    local conn = self.conn
    if conn then
        conn:cancel_wait()
        -- Deliveries already here go back to the queue at once; the
        -- connection stays open for the acks of the messages in flight.
        local d = conn:take_queued()
        while d do
            conn:reject(d.delivery_tag, true)
            d = conn:take_queued()
        end
    end
end

--- Messages queued but not handled at shutdown: back to the broker.
function Pump:give_back(messages)
    for _, m in ipairs(messages) do
        if not m:stale() then m:requeue() end
    end
end

--------------------------------------------------------------------------------
-- The message handler

local Handler = {}
Handler.__index = Handler

local function run_handler(context, message, f, state)
    state.context = context
    local body = message:decode()
    state.body = body
    f.handler_fn(context, body, message)
end

function Handler:handle(message)
    local f = self.factory
    if message:stale() then
        -- Its connection broke before it was handled: the broker has put it
        -- back and delivers it again on the new connection.
        return
    end
    local tags = {
        kind = "consumer",
        ["amqp.routing_key"] = message.routing_key,
        ["amqp.consumer_tag"] = message.consumer_tag,
        ["amqp.delivery_tag"] = message.delivery_tag,
        ["amqp.exchange"] = message.exchange,
        ["amqp.redelivered"] = message.redelivered,
    }
    local state = {}
    local ok, err = pcall(qc.handle_message, f.baseplate, f.name, M.trace_info_from_headers(message.headers),
        tags, run_handler, message, f, state)
    if ok then
        message:ack()
        return
    end
    alog:exception("Unhandled error while trying to process a message.", { traceback = tostring(err) })
    if f.error_handler_fn then
        f.error_handler_fn(state.context, state.body, message, err)
    else
        message:requeue()
    end
    if is_fatal(err) then error(err, 0) end
end

--------------------------------------------------------------------------------
-- The factory

local Factory = {}
Factory.__index = Factory
M.AmqpQueueConsumerFactory = Factory
M.KombuQueueConsumerFactory = Factory

local function check(opts, key, kind)
    if type(opts[key]) ~= kind then
        error("AmqpQueueConsumerFactory: " .. key .. " must be a " .. kind, 3)
    end
end

--- opts: baseplate, connection (connection_from_config), exchange
--- (exchange_from_config), queue_name, routing_keys (a list), handler_fn;
--- optional: name (the span's; default the queue name), error_handler_fn,
--- health_check_fn, serializer (clients.amqp.register_serializer's),
--- queue_durable (true), queue_auto_delete (false), exchange_durable
--- (true), prefetch_count (default: the work queue's size),
--- max_backoff (seconds between reconnects at most; 5).
function Factory.new(opts)
    if type(opts) ~= "table" then error("AmqpQueueConsumerFactory.new: expected a table of options", 2) end
    check(opts, "baseplate", "table")
    check(opts, "connection", "table")
    check(opts, "queue_name", "string")
    check(opts, "handler_fn", "function")
    local keys = opts.routing_keys or {}
    if type(keys) ~= "table" then error("AmqpQueueConsumerFactory: routing_keys must be a list", 2) end
    local self = setmetatable({
        baseplate = opts.baseplate,
        name = opts.name or opts.queue_name,
        connection = opts.connection,
        exchange = opts.exchange or { name = "", type = "direct" },
        queue_name = opts.queue_name,
        routing_keys = keys,
        handler_fn = opts.handler_fn,
        error_handler_fn = opts.error_handler_fn,
        health_check_fn = opts.health_check_fn,
        serializer = opts.serializer,
        queue_durable = opts.queue_durable ~= false,
        queue_auto_delete = opts.queue_auto_delete == true,
        exchange_durable = opts.exchange_durable ~= false,
        prefetch_count = opts.prefetch_count,
        max_backoff = opts.max_backoff or 5,
    }, Factory)
    return self
end

function Factory:build_pump_worker(work_queue)
    local prefetch = self.prefetch_count or work_queue.maxsize
    if prefetch > 65535 then prefetch = 65535 end
    local pump = setmetatable({ factory = self, work_queue = work_queue, prefetch = prefetch, stopped = false,
                                connections = 0 }, Pump)
    self.pump = pump
    return pump
end

function Factory:build_message_handler()
    return setmetatable({ factory = self }, Handler)
end

local consumer_spec = {
    queue_name = config.String,
    routing_keys = config.Optional(config.TupleOf(config.String), {}),
    queue_durable = config.Optional(config.Boolean, true),
    queue_auto_delete = config.Optional(config.Boolean, false),
    prefetch_count = config.Optional(config.Integer, nil),
}

--- The factory from the keys under `prefix` ("amqp." by default):
--- the connection's (hostname, virtual_host, heartbeat, connect_timeout),
--- the exchange's (exchange_name, exchange_type), queue_name,
--- routing_keys (comma-separated), queue_durable, queue_auto_delete,
--- prefetch_count, credentials_secret (looked up in opts.secrets, a
--- baseplate.lib.secrets store, at each connect). opts: handler_fn, secrets
--- and the rest of new's.
function M.from_config(bp, app_config, opts)
    local prefix = opts.prefix or "amqp."
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, consumer_spec)
    if cfg.prefetch_count and (cfg.prefetch_count < 1 or cfg.prefetch_count > 65535) then
        error(config.ConfigurationError(key_base .. ".prefetch_count", "must be 1 to 65535"), 0)
    end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.baseplate = bp
    o.connection = amqp.connection_from_config(app_config, prefix, key_base, opts.secrets)
    o.exchange = amqp.exchange_from_config(app_config, prefix)
    o.queue_name = cfg.queue_name
    o.routing_keys = cfg.routing_keys
    o.queue_durable = cfg.queue_durable
    o.queue_auto_delete = cfg.queue_auto_delete
    o.prefetch_count = o.prefetch_count or cfg.prefetch_count
    return Factory.new(o)
end

return M
