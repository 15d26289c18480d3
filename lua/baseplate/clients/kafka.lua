-- A Kafka producer for configure_context (docs/kafka.md).
--
--   bp:configure_context({ events = kafka.KafkaProducer() })
--   -- [app:main] events.bootstrap_servers = 127.0.0.1:9092
--   context.events:produce("topic", '{"n": 1}', { key = "k" })
--
-- Each produce is a child span "{name}.produce" of the request's span and
-- waits (in its coroutine, not the loop) until the broker acknowledged the
-- message or it could not be delivered; the message's headers carry the
-- span's trace context (X-Trace, X-Span, X-Parent, X-Sampled, X-Flags) so
-- that a consumer continues the trace. One librdkafka producer per client,
-- made at its first use (in the worker process, after any fork).
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local base = require("baseplate.clients.base")
local kcore = require("baseplate.clients.kafka_core")

local C = core.C
local type, tostring, pairs, error, setmetatable = type, tostring, pairs, error, setmetatable

local M = {}

local Producer = {}
Producer.__index = Producer
M.Producer = Producer

--- A producer over `props` (librdkafka properties: bootstrap.servers…),
--- waiting at most `timeout` seconds for each delivery.
function M.new_producer(props, timeout, client_name)
    return setmetatable({ props = props, timeout = timeout or 30, client = client_name or "kafka" }, Producer)
end

local function handle_of(self)
    if self.k then return self.k end
    local props = {}
    for k, v in pairs(self.props) do props[k] = v end
    if props["message.timeout.ms"] == nil then
        props["message.timeout.ms"] = tostring(math.floor(self.timeout * 1000))
    end
    local conf = kcore.conf_array(props)
    local k = C.bp_kafka_producer_new(conf.arr, core.errbuf, core.errbuf_size)
    if k == nil then
        error(base.error({ class = "ConnectionError", client = self.client,
                           message = self.client .. ": " .. core.errmsg() }), 0)
    end
    self.k = ffi.gc(k, C.bp_kafka_free)
    return self.k
end

local function start_produce(id, w)
    return C.bp_kafka_produce(w.k, w.topic, w.partition, w.value, #w.value, w.key, w.key and #w.key or 0,
        w.headers, w.nheaders, id, core.errbuf, core.errbuf_size)
end

local function trace_headers(span)
    if span == nil then return nil, 0 end
    local list = { "X-Trace", tostring(span.trace_id), "X-Span", tostring(span.id) }
    local parent = span.parent_id
    if parent then list[#list + 1] = "X-Parent"; list[#list + 1] = tostring(parent) end
    local sampled = span.sampled
    if sampled ~= nil then list[#list + 1] = "X-Sampled"; list[#list + 1] = sampled and "1" or "0" end
    local flags = span.flags
    if flags then list[#list + 1] = "X-Flags"; list[#list + 1] = tostring(flags) end
    return list
end

--- Produce `value` (a string) to `topic` and wait until it is delivered.
--- opts: key (string), partition (number; default: librdkafka's
--- partitioner), headers ({ name = value }), span (set by the context
--- client). Raises a client error (ConnectionError, TimeoutError) when it
--- was not delivered.
function Producer:produce(topic, value, opts)
    if type(topic) ~= "string" or topic == "" then error("produce: topic must be a non-empty string", 2) end
    if type(value) ~= "string" then error("produce: value must be a string", 2) end
    opts = opts or {}
    local list = trace_headers(opts.span) or {}
    for k, v in pairs(opts.headers or {}) do
        list[#list + 1] = tostring(k)
        list[#list + 1] = tostring(v)
    end
    local nh = #list / 2
    local harr = nh > 0 and ffi.new("const char *[?]", #list, list) or nil
    local w = { k = handle_of(self), topic = topic, partition = opts.partition or -1, value = value,
                key = opts.key and tostring(opts.key) or nil, headers = harr, nheaders = nh, keep = list }
    local rc = runtime.await_timeout(self.timeout + 1, start_produce, w)
    if rc == core.OK then return true end
    local what
    if rc == core.ETIMEDOUT then
        what = "no delivery report within " .. self.timeout .. "s"
    elseif rc == core.EIO then
        what = ffi.string(C.bp_kafka_error(w.k))
    else
        what = core.errmsg()
    end
    error(base.error({ class = rc == core.ETIMEDOUT and "TimeoutError" or "ConnectionError",
                       client = self.client, command = "produce " .. topic,
                       message = self.client .. ": producing to " .. topic .. ": " .. what }), 0)
end

--------------------------------------------------------------------------------
-- configure_context

local Client = {}
Client.__index = Client

--- The context object: produce(topic, value, opts) in a child span.
function Client:produce(topic, value, opts)
    local span = self.span and self.span:make_child(self.name .. ".produce") or nil
    if not span then return self.producer:produce(topic, value, opts) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.span = span
    return span:with(function(s)
        s:set_tag("kafka.topic", topic)
        return self.producer:produce(topic, value, o)
    end)
end

M.SPEC = {
    bootstrap_servers = config.String,
    timeout = config.Optional(config.Timespan, 30),
}

local function build(key_path, raw)
    local cfg = config.parse_config_at(raw, key_path .. ".", M.SPEC)
    local props = {}
    local lp = key_path .. ".librdkafka."
    for k, v in pairs(raw) do
        if type(k) == "string" and k:sub(1, #lp) == lp and #k > #lp then props[k:sub(#lp + 1)] = v end
    end
    props["bootstrap.servers"] = cfg.bootstrap_servers
    local producer = M.new_producer(props, cfg.timeout, key_path)
    return base.context_factory(nil, function(name, span)
        return setmetatable({ name = name, span = span, producer = producer }, Client)
    end, { producer = producer })
end

--- For configure_context: { events = KafkaProducer() } reads
--- events.bootstrap_servers, events.timeout and events.librdkafka.*.
function M.KafkaProducer()
    return base.client_parser(build)
end

return M
