-- Application metrics via StatsD (include/baseplate/metrics.h).
--
--   local metrics = require("baseplate.lib.metrics")
--   local client = metrics.metrics_client_from_config(app_config)
--   client:counter("events.connect"):increment()
--   client:gauge("workers"):replace(4)
--   client:timer("something.todo"):with(function() do_something() end)
--
--   local batch = client:batch()
--   batch:counter("froozles"):increment()
--   batch:flush()
--
-- The transport packs lines into datagrams of about 1,400 bytes, sent when
-- full or a few milliseconds after the first line, and always at shutdown.
local ffi = require("ffi")
local core = require("baseplate.core")
local config = require("baseplate.lib.config")
require("baseplate.runtime") -- bp_monotonic

ffi.cdef([[
typedef struct bp_metrics_s bp_metrics_t;
typedef struct bp_metrics_batch_s bp_metrics_batch_t;
typedef struct { const char *key; const char *value; } bp_metric_tag_t;
typedef struct {
  const char *endpoint;
  int log_if_unconfigured;
  int swallow_network_errors;
  size_t datagram_size;
  double flush_interval;
} bp_metrics_options_t;
void bp_metrics_options_init(bp_metrics_options_t *o);
bp_metrics_t *bp_metrics_new(const bp_metrics_options_t *o, char *err, size_t errlen);
void bp_metrics_free(bp_metrics_t *m);
void bp_metrics_flush(bp_metrics_t *m);
int bp_metrics_configured(const bp_metrics_t *m);
void bp_metrics_stats(const bp_metrics_t *m, unsigned long long *datagrams, unsigned long long *lines);
bp_metrics_batch_t *bp_metrics_batch_new(bp_metrics_t *m, const char *namespace_);
void bp_metrics_batch_free(bp_metrics_batch_t *b);
int bp_metrics_counter(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                       size_t ntags, double delta, double rate);
int bp_metrics_timer(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                     size_t ntags, double ms, double rate);
int bp_metrics_gauge(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                     size_t ntags, double value);
int bp_metrics_histogram(bp_metrics_batch_t *b, const char *name, const bp_metric_tag_t *tags,
                         size_t ntags, double value);
int bp_metrics_batch_flush(bp_metrics_batch_t *b);
size_t bp_metrics_batch_size(const bp_metrics_batch_t *b);
]])

local C = core.C
local type, tostring, pairs, setmetatable, sort = type, tostring, pairs, setmetatable, table.sort

local M = {}

-- Tags as a C array: {k = v} (keys sorted: Lua tables have no order) or a
-- list of {k, v} pairs (kept in order).
local function c_tags(tags)
    if tags == nil or next(tags) == nil then return nil, 0 end
    local pairs_list = {}
    if tags[1] ~= nil then
        for i = 1, #tags do pairs_list[i] = tags[i] end
    else
        local keys = {}
        for k in pairs(tags) do keys[#keys + 1] = k end
        sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        for i, k in ipairs(keys) do pairs_list[i] = { k, tags[k] } end
    end
    local n = #pairs_list
    local arr = ffi.new("bp_metric_tag_t[?]", n)
    local keep = {}
    for i = 1, n do
        local k, v = tostring(pairs_list[i][1]), pairs_list[i][2]
        if v == true then v = "True" elseif v == false then v = "False" else v = tostring(v) end
        keep[#keep + 1] = k
        keep[#keep + 1] = v
        arr[i - 1].key = k
        arr[i - 1].value = v
    end
    return arr, n, keep
end

local function check(rc, what, level)
    if rc ~= core.OK and rc ~= core.ETOOBIG then
        error(what .. ": " .. (rc == core.EINVAL and "invalid name, tag or value" or core.strerror(rc)),
            level + 1)
    end
end

--------------------------------------------------------------------------------
-- Metrics: each records into a batch; a client's metrics send at once.

local Counter = {}
Counter.__index = Counter
local Timer = {}
Timer.__index = Timer
local Gauge = {}
Gauge.__index = Gauge
local Histogram = {}
Histogram.__index = Histogram
M.Counter, M.Timer, M.Gauge, M.Histogram = Counter, Timer, Gauge, Histogram

local function metric(mt, owner, name, tags)
    if type(name) ~= "string" or name == "" then error("metric name must be a non-empty string", 3) end
    local arr, n, keep = c_tags(tags)
    return setmetatable({ owner = owner, name = name, tags = arr, ntags = n, _keep = keep }, mt)
end

local function done(self)
    local o = self.owner
    if o.immediate then C.bp_metrics_batch_flush(o.b) end
end

local function send_counter(self, delta, sample_rate, level)
    check(C.bp_metrics_counter(self.owner.b, self.name, self.tags, self.ntags, delta, sample_rate or 1),
        "counter " .. self.name, level + 1)
    done(self)
end

function Counter:increment(delta, sample_rate)
    send_counter(self, delta or 1, sample_rate or 1, 2)
end

function Counter:decrement(delta, sample_rate)
    send_counter(self, -(delta or 1), sample_rate or 1, 2)
end

function Counter:send(delta, sample_rate)
    send_counter(self, delta, sample_rate, 2)
end

function Timer:start(sample_rate)
    self.started = C.bp_monotonic()
    self.sample_rate = sample_rate or 1
    return self
end

function Timer:stop()
    if not self.started then error("timer " .. self.name .. ": stop() without start()", 2) end
    local elapsed = C.bp_monotonic() - self.started
    self.started = nil
    self:send(elapsed, self.sample_rate)
end

--- Send an elapsed time in seconds.
function Timer:send(elapsed, sample_rate)
    check(C.bp_metrics_timer(self.owner.b, self.name, self.tags, self.ntags, elapsed * 1000,
        sample_rate or 1), "timer " .. self.name, 2)
    done(self)
end

--- Time fn(...): start, run, stop (also when fn raises).
function Timer:with(fn, ...)
    self:start()
    local res = { pcall(fn, ...) }
    self:stop()
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, table.maxn(res))
end

function Gauge:replace(value)
    check(C.bp_metrics_gauge(self.owner.b, self.name, self.tags, self.ntags, value),
        "gauge " .. self.name, 2)
    done(self)
end

function Histogram:add_sample(value)
    check(C.bp_metrics_histogram(self.owner.b, self.name, self.tags, self.ntags, value),
        "histogram " .. self.name, 2)
    done(self)
end

--------------------------------------------------------------------------------
-- Batches and clients

local Batch = {}
Batch.__index = Batch
M.Batch = Batch

function Batch:counter(name, tags) return metric(Counter, self, name, tags) end
function Batch:timer(name, tags) return metric(Timer, self, name, tags) end
function Batch:gauge(name, tags) return metric(Gauge, self, name, tags) end
function Batch:histogram(name, tags) return metric(Histogram, self, name, tags) end

--- Send the batched metrics now.
function Batch:flush()
    C.bp_metrics_batch_flush(self.b)
end

--- Bytes the batch would send now.
function Batch:size()
    return tonumber(C.bp_metrics_batch_size(self.b))
end

--- A Batch over a C batch owned elsewhere (a server span's).
function M.wrap_batch(b)
    return setmetatable({ b = b }, Batch)
end

local Client = {}
Client.__index = Client
M.Client = Client

local function new_batch(transport, namespace)
    local b = C.bp_metrics_batch_new(transport, namespace)
    if b == nil then error("out of memory", 3) end
    return ffi.gc(b, C.bp_metrics_batch_free)
end

--- A client over a C transport (kept alive by the client).
function M.client(transport, namespace)
    local self = setmetatable({ transport = transport, namespace = namespace or "" }, Client)
    self._direct = setmetatable({ b = new_batch(transport, namespace or ""), immediate = true,
                                  transport = transport }, Batch)
    return self
end

function Client:batch()
    -- the batch keeps the transport alive (its C batch points to it)
    return setmetatable({ b = new_batch(self.transport, self.namespace), transport = self.transport }, Batch)
end
function Client:counter(name, tags) return metric(Counter, self._direct, name, tags) end
function Client:timer(name, tags) return metric(Timer, self._direct, name, tags) end
function Client:gauge(name, tags) return metric(Gauge, self._direct, name, tags) end
function Client:histogram(name, tags) return metric(Histogram, self._direct, name, tags) end

--- Send whatever the transport holds now.
function Client:flush()
    C.bp_metrics_flush(self.transport)
end

--- Datagrams and lines the transport has sent.
function Client:stats()
    local d, l = ffi.new("unsigned long long[1]"), ffi.new("unsigned long long[1]")
    C.bp_metrics_stats(self.transport, d, l)
    return tonumber(d[0]), tonumber(l[0])
end

--- A C transport from the metrics.* keys: endpoint, log_if_unconfigured,
--- swallow_network_errors. Raises a ConfigurationError naming the key.
function M.transport_from_config(app_config)
    local cfg = config.parse_config(app_config, {
        metrics = {
            endpoint = config.Optional(config.String, ""),
            log_if_unconfigured = config.Optional(config.Boolean, false),
            swallow_network_errors = config.Optional(config.Boolean, false),
        },
    })
    local o = ffi.new("bp_metrics_options_t")
    C.bp_metrics_options_init(o)
    o.endpoint = cfg.metrics.endpoint
    o.log_if_unconfigured = cfg.metrics.log_if_unconfigured and 1 or 0
    o.swallow_network_errors = cfg.metrics.swallow_network_errors and 1 or 0
    local t = C.bp_metrics_new(o, core.errbuf, core.errbuf_size)
    if t == nil then
        local msg = core.errmsg()
        local key, reason = msg:match("^(metrics%.[%w_]+): (.*)$")
        error(config.ConfigurationError(key or "metrics.endpoint", reason or msg), 0)
    end
    return ffi.gc(t, C.bp_metrics_free)
end

--- Baseplate.py's metrics_client_from_config: metrics.namespace and the
--- transport keys.
function M.metrics_client_from_config(app_config)
    local cfg = config.parse_config(app_config, {
        metrics = { namespace = config.Optional(config.String, "") },
    })
    return M.client(M.transport_from_config(app_config), cfg.metrics.namespace)
end

return M
