-- The Baseplate object: observers, the request context, server spans.
--
--   local baseplate = require("baseplate")
--   function M.make_app(app_config)
--       local bp = baseplate.Baseplate(app_config)
--       bp:configure_observers()
--       bp:configure_context({ cfg = { doggo_is_good = config.Boolean } })
--       local app = http.app(app_config, { baseplate = bp })
--       ...
--
-- The C core makes a server span for every request of an app that has a
-- Baseplate (src/http/server.c start_span) and runs its observers; this
-- module adds what Lua brings: context objects built by factories, Lua
-- observers (heard through the core's one observer bus: baseplate.span),
-- the observers the configuration asks for, and server spans for scripts.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local span_mod = require("baseplate.span")
local config = require("baseplate.lib.config")
local metrics = require("baseplate.lib.metrics")
local log = require("baseplate.log")

ffi.cdef([[
typedef struct bp_baseplate_s bp_baseplate_t;
typedef struct {
  const char *namespace_;
  int tagging;
  const char *allowlist;
  double sample_rate;
} bp_metrics_observer_options_t;
bp_baseplate_t *bp_baseplate_new(const char *service_name);
void bp_baseplate_free(bp_baseplate_t *bp);
int bp_baseplate_add_metrics_observer(bp_baseplate_t *bp, bp_metrics_t *transport,
                                      const bp_metrics_observer_options_t *o, char *err,
                                      size_t errlen);
bp_metrics_t *bp_baseplate_metrics(const bp_baseplate_t *bp);
bp_span_t *bp_span_new_server(bp_baseplate_t *bp, const char *name, const bp_trace_info_t *ti);
bp_metrics_batch_t *bp_span_metrics(bp_span_t *span);
typedef struct bp_section_s bp_section_t;
typedef struct {
  const char *name;
  const char *prefix;
  int (*create)(void *ud, bp_baseplate_t *bp, const bp_section_t *config, char *err,
                size_t errlen);
  void *ud;
} bp_observer_factory_t;
int bp_observer_factory_count(void);
const bp_observer_factory_t *bp_observer_factory_at(int i);
bp_section_t *bp_section_new(const char *name);
int bp_section_set(bp_section_t *section, const char *key, const char *value);
void bp_section_free(bp_section_t *section);
typedef struct bp_tracer_s bp_tracer_t;
typedef struct {
  const char *service_name;
  double sample_rate;
  const char *queue_name;
  int collect;
  int max_span_queue_size;
  double batch_interval;
  int format;
} bp_tracing_options_t;
bp_tracer_t *bp_baseplate_add_tracing_observer(bp_baseplate_t *bp, const bp_tracing_options_t *o,
                                               char *err, size_t errlen);
int bp_tracing_wait(bp_tracer_t *t, int waiter);
const char *bp_tracing_take(bp_tracer_t *t, size_t max_bytes, int *nspans, size_t *len);
int bp_tracing_pending(const bp_tracer_t *t);
uint64_t bp_tracing_dropped(const bp_tracer_t *t);
]])

local C = core.C
local Span = span_mod.Span
local ipairs = ipairs
local type, pairs, rawget, rawset, setmetatable, getmetatable, pcall, tostring =
    type, pairs, rawget, rawset, setmetatable, getmetatable, pcall, tostring

local M = {}
local obs_log = log.get_logger("baseplate")

local Baseplate = {}
Baseplate.__index = Baseplate
M.Baseplate = Baseplate

-- A nested group of context attributes (configure_context with a table).
local Nested = {}

-- The module that called Baseplate(): the default service name.
local function caller_module()
    local info = debug.getinfo(3, "S")
    local src = info and info.short_src or ""
    return src:match("([^/]+)%.lua$") or "baseplate"
end

--- Baseplate(app_config): the core of the observability framework.
function M.new(app_config)
    app_config = app_config or {}
    if type(app_config) ~= "table" then error("Baseplate: expected the app config table", 2) end
    local name = app_config["baseplate.service_name"]
    if name == nil or name == "" then name = caller_module() end
    local c = C.bp_baseplate_new(name)
    if c == nil then error("out of memory", 2) end
    return setmetatable({
        app_config = app_config,
        service_name = name,
        c = ffi.gc(c, C.bp_baseplate_free),
        _observers = {},
        _context = {},
    }, Baseplate)
end

-- A server span of a Baseplate with Lua observers (delivered by
-- baseplate.span in order with the span's other events). `context` is the
-- job's (a request, a Thrift call's context, make_server_span's); a span the
-- core made without Lua (a C route) gets a new context object.
local function server_span_created(bp, span, context)
    if not context then
        context = bp:make_context_object()
        rawset(context, "span", span)
        span.context = context
    end
    bp:notify_server_span_created(context, span)
end

--- Register a Lua observer: a table with on_server_span_created(context, span).
function Baseplate:register(observer)
    if type(observer) ~= "table" or type(observer.on_server_span_created) ~= "function" then
        error("register: expected an observer with on_server_span_created(context, span)", 2)
    end
    if not self._observers[1] then span_mod.forward(self, server_span_created) end
    self._observers[#self._observers + 1] = observer
end

--- Whether Lua observers watch this Baseplate's server spans.
function Baseplate:has_lua_observers()
    return self._observers[1] ~= nil
end

-- The built-in metrics observer's factory.
local function metrics_factory(bp, raw)
    local cfg = config.parse_config(raw, {
        metrics = {
            namespace = config.Optional(config.String, ""),
            tagging = config.Optional(config.Boolean, false),
            allowlist = config.Optional(config.TupleOf(config.String), {}),
        },
        metrics_observer = { sample_rate = config.Optional(config.Percent, 1.0) },
    })
    local m = cfg.metrics
    if not (m.tagging or m.namespace ~= "") then return false end
    if m.tagging and m.namespace ~= "" then
        error(config.ConfigurationError("metrics.namespace", "cannot be combined with metrics.tagging"), 0)
    end
    if cfg.metrics_observer.sample_rate <= 0 then
        error(config.ConfigurationError("metrics_observer.sample_rate", "must be above 0%"), 0)
    end
    local transport = metrics.transport_from_config(raw)
    local o = ffi.new("bp_metrics_observer_options_t")
    o.namespace_ = m.namespace
    o.tagging = m.tagging and 1 or 0
    local allow = table.concat(m.allowlist, ",")
    o.allowlist = allow
    o.sample_rate = cfg.metrics_observer.sample_rate
    if C.bp_baseplate_add_metrics_observer(bp.c, transport, o, core.errbuf, core.errbuf_size) ~= 0 then
        error(core.errmsg(), 0)
    end
    bp.metrics_transport = transport
    bp.metrics_client = metrics.client(transport, m.namespace)
    return true
end

-- The tracing observer's factory: the observer is C (src/tracing.c); with
-- tracing.endpoint (and no queue_name) a flusher coroutine takes its
-- batches, once per batch interval, and POSTs them with the HTTP client.
local TRACE_BATCH_BYTES = 500 * 1024
local function tracing_wait(waiter, tracer) return C.bp_tracing_wait(tracer, waiter) end

local function trace_flusher(bp, f)
    local tracer, session, url, prefix, suffix = f.tracer, f.session, f.url, f.prefix, f.suffix
    local trace_log = log.get_logger("baseplate.tracing")
    local nspans, len = ffi.new("int[1]"), ffi.new("size_t[1]")
    local headers = { ["Content-Type"] = "application/json" }
    while runtime.await(tracing_wait, tracer) == core.OK do
        while C.bp_tracing_pending(tracer) > 0 do
            local p = C.bp_tracing_take(tracer, TRACE_BATCH_BYTES, nspans, len)
            if p == nil then break end
            local body = ffi.string(p, len[0])
            if prefix then body = prefix .. body .. suffix end -- OTLP's envelope
            local ok, res = pcall(session.post, session, url, { body = body, headers = headers, timeout = 1 })
            if not ok then
                trace_log:warning("Error while sending %d spans: %s", nspans[0], tostring(res))
            elseif res.status >= 300 then
                trace_log:warning("Error while sending %d spans: HTTP %d from %s", nspans[0], res.status, url)
            end
        end
    end
    bp._trace_flusher = nil
end

local function tracing_factory(bp, raw)
    local cfg = config.parse_config(raw, {
        tracing = {
            service_name = config.Optional(config.String, ""),
            endpoint = config.Optional(config.Endpoint),
            otlp_endpoint = config.Optional(config.String),
            queue_name = config.Optional(config.String),
            sample_rate = config.Optional(config.Percent, 0.1),
            max_span_queue_size = config.Optional(config.Integer, 50000),
            span_batch_interval = config.Optional(config.Timespan, 0.5),
            num_span_workers = config.Optional(config.Integer, 5),
            num_conns = config.Optional(config.Integer, 100),
        },
    }).tracing
    if cfg.service_name == "" then return false end
    if cfg.endpoint and cfg.endpoint.family == "AF_UNIX" then
        error(config.ConfigurationError("tracing.endpoint", "expected host:port"), 0)
    end
    if cfg.span_batch_interval <= 0 then
        error(config.ConfigurationError("tracing.span_batch_interval", "must be above 0"), 0)
    end
    local otlp = cfg.otlp_endpoint
    if otlp then
        if not otlp:match("^https?://[^/]") then
            error(config.ConfigurationError("tracing.otlp_endpoint", "expected an http(s) URL, got " .. otlp), 0)
        end
        if cfg.endpoint then
            error(config.ConfigurationError("tracing.otlp_endpoint", "cannot be combined with tracing.endpoint"), 0)
        end
    end
    local o = ffi.new("bp_tracing_options_t")
    o.service_name = cfg.service_name
    o.sample_rate = cfg.sample_rate
    o.queue_name = cfg.queue_name
    o.collect = ((cfg.endpoint or otlp) and not cfg.queue_name) and 1 or 0
    o.format = otlp and 1 or 0
    o.max_span_queue_size = cfg.max_span_queue_size
    o.batch_interval = cfg.span_batch_interval
    local tracer = C.bp_baseplate_add_tracing_observer(bp.c, o, core.errbuf, core.errbuf_size)
    if tracer == nil then error(core.errmsg(), 0) end
    bp.tracer = tracer
    if o.collect == 1 then
        local http = require("baseplate.clients.http")
        local client = http.client_from_settings("tracing", { max_retries = 0, connect_timeout = 1 }, true)
        client._cfg.filter = nil -- the collector may be anywhere: no address filter
        local f = { tracer = tracer, session = http.session(client, "tracing") }
        if otlp then -- OTLP/HTTP JSON: the batch of spans inside one resource and scope
            f.url = otlp:gsub("/+$", "") .. "/v1/traces"
            f.prefix = '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":'
                .. require("cjson").encode(cfg.service_name)
                .. '}}]},"scopeSpans":[{"scope":{"name":"baseplate"},"spans":'
            f.suffix = "}]}]}"
        else
            local e = cfg.endpoint -- ":9411": config.socket_host's this host
            f.url = "http://" .. (e.host == "" and (config.socket_host("") .. ":" .. e.port) or tostring(e))
                .. "/api/v1/spans"
        end
        bp._trace_flusher = true
        runtime.spawn(trace_flusher, bp, f)
    end
    return true
end

-- The observer factories, in the order configure_observers runs them; C
-- extension modules add theirs to the core's registry
-- (bp_observer_factory_register), which runs after these.
local factories = {
    { name = "metrics", prefix = "metrics", create = metrics_factory },
    { name = "tracing", prefix = "tracing.", create = tracing_factory },
    { name = "sentry", prefix = "sentry.", create = function(bp, raw)
        return require("baseplate.observers.sentry").factory(bp, raw)
    end },
    { name = "server_timeout", prefix = "server_timeout.",
      create = function(bp, raw) return require("baseplate.server_timeout").factory(bp, raw) end },
}
M.observer_factories = factories

--- Add an observer factory: `create(bp, app_config)` installs its observer
--- (bp:register, or the C API on bp.c) and returns true, or false when the
--- config leaves it off; it is called only when a key of the app config
--- starts with `prefix`.
function M.register_observer_factory(name, prefix, create)
    if type(name) ~= "string" or name == "" or type(prefix) ~= "string" or prefix == ""
        or type(create) ~= "function" then
        error("register_observer_factory: expected a name, a config prefix and a function", 2)
    end
    for _, f in ipairs(factories) do
        if f.name == name then error("register_observer_factory: " .. name .. " is already registered", 2) end
    end
    for i = 0, C.bp_observer_factory_count() - 1 do
        if ffi.string(C.bp_observer_factory_at(i).name) == name then
            error("register_observer_factory: " .. name .. " is already registered", 2)
        end
    end
    factories[#factories + 1] = { name = name, prefix = prefix, create = create }
end

local function has_prefix(raw, prefix)
    for k in pairs(raw) do
        if type(k) == "string" and k:sub(1, #prefix) == prefix then return true end
    end
    return false
end

-- The app config as a C section (for the C factories).
local function section_of(raw)
    local sec = C.bp_section_new("app")
    if sec == nil then error("out of memory", 3) end
    sec = ffi.gc(sec, C.bp_section_free)
    for k, v in pairs(raw) do
        if type(k) == "string" and (type(v) == "string" or type(v) == "number" or type(v) == "boolean") then
            if C.bp_section_set(sec, k, tostring(v)) ~= 0 then error("out of memory", 3) end
        end
    end
    return sec
end

--- Install the observers the configuration asks for (docs/observers.md),
--- from the registry of observer factories.
function Baseplate:configure_observers()
    local raw = self.app_config
    local skipped = {}
    for _, f in ipairs(factories) do
        if not (has_prefix(raw, f.prefix) and f.create(self, raw)) then
            skipped[#skipped + 1] = f.name
        end
    end
    local sec
    for i = 0, C.bp_observer_factory_count() - 1 do
        local f = C.bp_observer_factory_at(i)
        local name = ffi.string(f.name)
        local rc = core.DECLINED
        if has_prefix(raw, ffi.string(f.prefix)) then
            sec = sec or section_of(raw)
            core.errbuf[0] = 0
            rc = f.create(f.ud, self.c, sec, core.errbuf, core.errbuf_size)
            if rc ~= core.OK and rc ~= core.DECLINED then
                local why = core.errmsg()
                if why == "" then why = core.strerror(rc) end
                error(name .. " observer: " .. why, 2)
            end
        end
        if rc ~= core.OK then skipped[#skipped + 1] = name end
    end
    if #skipped > 0 then
        obs_log:info("The following observers are unconfigured and won't run: %s", table.concat(skipped, ", "))
    end
end

-- How an attribute config becomes a context item.
local function item_of(name, v)
    if type(v) == "table" and getmetatable(v) == nil and type(v.make_object_for_context) ~= "function" then
        local items = {}
        for k, sub in pairs(v) do
            if type(k) ~= "string" then error("add_to_context " .. name .. ": keys must be strings", 3) end
            items[k] = item_of(name .. "." .. k, sub)
        end
        return setmetatable({ items = items, prefix = name }, Nested)
    end
    return v
end

local RESERVED = { span = true, trace = true, _bp = true, edge_context = true, raw_edge_context = true }

--- Add an attribute (an object, a factory with make_object_for_context, or
--- a table of those) to every request's context.
function Baseplate:add_to_context(name, attribute_config)
    if type(name) ~= "string" or name == "" or RESERVED[name] then
        error("add_to_context: invalid attribute name " .. tostring(name), 2)
    end
    self._context[name] = item_of(name, attribute_config)
end

local function is_parser(v)
    if type(v) == "function" then return true end
    local mt = getmetatable(v)
    if type(v) == "table" and mt ~= nil then
        return type(v.parse) == "function" or (type(mt) == "table" and mt.__call ~= nil)
    end
    return false
end

-- Split a spec into the parsers (parsed from the config) and the objects.
local function split(spec)
    local parsers, objects, np, no = {}, {}, 0, 0
    for k, v in pairs(spec) do
        if is_parser(v) then
            parsers[k] = v
            np = np + 1
        elseif type(v) == "table" and getmetatable(v) == nil
            and type(v.make_object_for_context) ~= "function" then
            local p, o = split(v)
            if next(p) then parsers[k] = p; np = np + 1 end
            if next(o) then objects[k] = o; no = no + 1 end
        else
            objects[k] = v
            no = no + 1
        end
    end
    return parsers, objects
end

local function merge(a, b)
    for k, v in pairs(b) do
        if type(a[k]) == "table" and getmetatable(a[k]) == nil and type(v) == "table" and getmetatable(v) == nil then
            merge(a[k], v)
        else
            a[k] = v
        end
    end
    return a
end

--- Attach a whole spec to the context: parsers in it (config types, client
--- parsers returning factories) are parsed from the app config.
function Baseplate:configure_context(context_spec)
    if type(context_spec) ~= "table" then error("configure_context: expected a spec table", 2) end
    local parsers, objects = split(context_spec)
    local parsed = config.parse_config(self.app_config, parsers)
    for name, v in pairs(merge(parsed, objects)) do
        self:add_to_context(name, v)
    end
end

-- Build context attribute `name` of ctx (nil if there is none).
local function make_item(item, name, span, bp)
    if type(item) == "table" then
        if getmetatable(item) == Nested then
            return setmetatable({ _items = item.items, _prefix = item.prefix, _bp = bp, span = span },
                M.NestedContext)
        elseif type(item.make_object_for_context) == "function" then
            return item:make_object_for_context(name, span)
        end
    end
    return item
end

--- Set the EdgeContextFactory (baseplate.lib.edgecontext): a table with
--- from_upstream(self, raw) or a function(raw) that turns the edge
--- context's raw bytes (nil when the request has none) into the typed edge
--- context a request's `edge_context` gives, parsed on first access.
function Baseplate:set_edge_context_factory(factory)
    if factory ~= nil and type(factory) ~= "function"
        and not (type(factory) == "table" and type(factory.from_upstream) == "function") then
        error("set_edge_context_factory: expected a table with from_upstream, or a function", 2)
    end
    self.edge_context_factory = factory
end

--- The edge context of `raw` (a request's raw edge-context bytes, or nil):
--- the factory's from_upstream(raw), or raw itself without a factory.
function Baseplate:edge_context_of(raw)
    local f = self.edge_context_factory
    if f == nil then return raw end
    if type(f) == "function" then return f(raw) end
    return f:from_upstream(raw)
end

--- The context attribute `name` for ctx, built on first use and kept.
function Baseplate:context_value(ctx, name, span)
    local item = self._context[name]
    local v
    if item ~= nil then
        v = make_item(item, name, span, self)
    elseif name == "raw_edge_context" then
        -- the bytes the server span carries (an HTTP X-Edge-Request decoded)
        v = span and span.edge_request or nil
    elseif name == "edge_context" then
        v = self:edge_context_of(ctx.raw_edge_context)
    elseif name == "metrics" and self.metrics_client and span then
        local b = C.bp_span_metrics(span.c)
        v = b ~= nil and metrics.wrap_batch(b) or self.metrics_client
    else
        return nil
    end
    rawset(ctx, name, v)
    return v
end

local NestedContext = {}
NestedContext.__index = function(self, k)
    local item = rawget(self, "_items")[k]
    if item == nil then return nil end
    local v = make_item(item, rawget(self, "_prefix") .. "." .. k, rawget(self, "span"), rawget(self, "_bp"))
    rawset(self, k, v)
    return v
end
-- The names a nested group has (the shell's Tab completion asks).
NestedContext.__dir = function(self)
    local names = {}
    for k in pairs(rawget(self, "_items")) do names[#names + 1] = k end
    return names
end
M.NestedContext = NestedContext

local RequestContext = {}
RequestContext.__index = function(self, k)
    local bp = rawget(self, "_bp")
    return bp:context_value(self, k, rawget(self, "span"))
end
-- The attributes a context can build (the shell's Tab completion asks).
RequestContext.__dir = function(self)
    local bp = rawget(self, "_bp")
    local names = {}
    for k in pairs(bp._context) do names[#names + 1] = k end
    if bp.metrics_client then names[#names + 1] = "metrics" end
    return names
end
M.RequestContext = RequestContext

--- The __index of a message's context object (an HTTP request, a Thrift
--- call's context): a field its getter computes once, then a method, then
--- the Baseplate's context attributes (the object's `_bp`, if any).
function M.context_index(getters, methods)
    return function(self, k)
        local g = getters[k]
        if g then
            local v = g(self)
            rawset(self, k, v)
            return v
        end
        local m = methods[k]
        if m ~= nil then return m end
        local bp = rawget(self, "_bp")
        if bp then return bp:context_value(self, k, self.span) end
        return nil
    end
end

--- A new context object (for make_server_span).
function Baseplate:make_context_object()
    return setmetatable({ _bp = self }, RequestContext)
end

--- Tell the Lua observers about a new server span (pcall each).
function Baseplate:notify_server_span_created(context, span)
    local obs = self._observers
    for i = 1, #obs do
        local ok, err = pcall(obs[i].on_server_span_created, obs[i], context, span)
        if not ok then
            obs_log:error("observer on_server_span_created failed: %s", tostring(err))
        end
    end
end

--- A server span for `name` on `context` (a new trace unless trace_info,
--- a TraceInfo, says otherwise). Raises "Context objects cannot be re-used"
--- for a context that already has a span.
function Baseplate:make_server_span(context, name, trace_info)
    if type(context) ~= "table" then error("make_server_span: expected a context object", 2) end
    if rawget(context, "span") ~= nil then error("Context objects cannot be re-used", 2) end
    local c = C.bp_span_new_server(self.c, tostring(name), span_mod.trace_info_c(trace_info))
    if c == nil then error("out of memory", 2) end
    local span = setmetatable({ c = ffi.gc(c, span_mod.C.bp_span_unref), context = context }, Span)
    rawset(context, "span", span)
    span_mod.adopt(c, context) -- (the observers hear of it now)
    return span
end

--- Run fn(context) in a new server span named `name` (scripts, crons):
--- the span finishes when fn returns or raises; log lines carry its trace.
function Baseplate:server_context(name, fn)
    if type(fn) ~= "function" then error("server_context: expected a function", 2) end
    local context = self:make_context_object()
    local span = self:make_server_span(context, name)
    return span:with(function()
        local prev = C.bp_span_current()
        runtime.set_span(span.c)
        local res = { pcall(fn, context) }
        runtime.set_span(prev)
        if not res[1] then error(res[2], 0) end
        return unpack(res, 2, table.maxn(res))
    end)
end

setmetatable(M, { __call = function(_, app_config) return M.new(app_config) end })

return M
