-- The Sentry observer: errors that fail a request, a Thrift call, a script
-- or code outside any request become Sentry events (docs/observers.md).
--
--   [app:main]
--   sentry.dsn = https://PUBLIC_KEY@sentry.example.com/42
--   sentry.environment = staging
--   sentry.sample_rate = 100%
--   sentry.ignore_errors = ValueError, my_service.Uninteresting
--
--   request.sentry:capture_exception(err)   -- direct use
--   request.sentry:capture_message("odd")
--
-- Events leave the request path at once: an observer only notes what it
-- needs (the error value, the trace ID, the route, the request line) in a
-- bounded queue; a background coroutine builds each event (frames parsed
-- from the Lua traceback, context lines read from the source files) and
-- POSTs it to the DSN's envelope endpoint through the HTTP client, one at a
-- time. A full queue drops events with a counted warning; a 429 pauses
-- sending for its Retry-After; a Sentry that is down or slow only costs the
-- sender's own time. The DSN's secret is only ever put in X-Sentry-Auth.
local bit = require("bit")
local cjson = require("cjson")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local log = require("baseplate.log")
local span_mod = require("baseplate.span")

local C = core.C
local type, tostring, tonumber, ipairs, pcall, setmetatable, rawget =
    type, tostring, tonumber, ipairs, pcall, setmetatable, rawget
local format = string.format

local M = {}

M.QUEUE_SIZE = 100      -- events waiting to be sent (sentry-sdk's transport queue)
M.SEND_TIMEOUT = 5      -- seconds for one POST to Sentry
M.WARN_INTERVAL = 10    -- seconds between two warnings of the same kind
M.MAX_FRAMES = 100
M.CONTEXT_LINES = 5
M.DEFAULT_PAUSE = 60    -- seconds a 429 without Retry-After pauses sending

local slog = log.get_logger("baseplate.observers.sentry")

--------------------------------------------------------------------------------
-- The DSN: {scheme}://{public_key}[:{secret_key}]@{host[:port]}{path}/{project_id}

--- Split a DSN; nil and the reason (which never quotes the DSN) when it is
--- not one.
function M.parse_dsn(dsn)
    if type(dsn) ~= "string" then return nil, "expected a string" end
    local scheme, userinfo, hostport, path = dsn:match("^(https?)://([^@/]+)@([^/?#]+)(/[^?#]*)$")
    if not scheme then
        return nil, "expected http(s)://PUBLIC_KEY@HOST/PROJECT_ID"
    end
    local public, secret = userinfo:match("^([^:]*):(.*)$")
    if not public then public = userinfo end
    if public == "" then return nil, "the public key is missing" end
    local prefix, project = path:match("^(.-)/([^/]+)/?$")
    if not project or not project:match("^%d+$") then
        return nil, "the project ID (the last part of the path) must be a number"
    end
    if not hostport:match("^[%w%.%-]+$") and not hostport:match("^[%w%.%-]+:%d+$")
        and not hostport:match("^%[[%x:%.]+%]:?%d*$") then
        return nil, "invalid host"
    end
    return {
        scheme = scheme,
        public_key = public,
        secret_key = secret ~= "" and secret or nil,
        host = hostport,
        project_id = project,
        endpoint = format("%s://%s%s/api/%s/envelope/", scheme, hostport, prefix, project),
    }
end

--------------------------------------------------------------------------------
-- Errors and tracebacks

local CoreError = span_mod.CoreError

-- Failures the core decides that are not crashes: an answer of 5xx without
-- an error (http.abort(503)), a client that went away, a request job that
-- died (reported with its traceback by the coroutine hook instead).
local NOT_CRASHES = { HTTPError = true, ConnectionClosed = true, InternalError = true }

--- The class, message and traceback text of any Lua error value.
function M.describe(err)
    if type(err) == "table" then
        local class = span_mod.error_class(err)
        local mt = getmetatable(err)
        local st = type(mt) == "table" and rawget(mt, "__thrift") -- (a Thrift exception struct)
        if class == "Error" and type(st) == "table" and type(st.name) == "string" then
            class = st.name:match("([^.]+)$") or st.name
        end
        local msg = rawget(err, "message")
        if msg == nil then
            msg = (mt and mt.__tostring) and tostring(err) or class
        end
        local tb = rawget(err, "traceback")
        msg = tostring(msg)
        if type(tb) ~= "string" then
            tb = nil
        else
            tb = tb:match("\nstack traceback:\n(.*)$") or tb:match("^stack traceback:\n(.*)$")
        end
        return class, msg, tb
    end
    local s = tostring(err)
    local msg, tb = s:match("^(.-)\nstack traceback:\n(.*)$")
    if not msg then msg = s end
    return "Error", msg, tb
end

-- Where baseplate's own modules are: frames there are not the app's.
local own_prefix
do
    local p = package.searchpath and package.searchpath("baseplate.core", package.path)
    own_prefix = p and p:match("^(.*/)baseplate/core%.lua$") or nil
end

-- Source lines of the files frames point at, kept for the process's life
-- (at most 64 files, each of at most 1 MiB; false for the unreadable).
local sources, nsources = {}, 0
local function source_lines(file)
    local lines = sources[file]
    if lines ~= nil then return lines or nil end
    lines = false
    if nsources < 64 and file:sub(1, 3) ~= "..." and file:sub(1, 1) ~= "[" then
        local f = io.open(file, "rb")
        if f then
            local size = f:seek("end")
            if size and size <= 1024 * 1024 then
                f:seek("set")
                local text = f:read("*a") or ""
                lines = {}
                for line in (text .. "\n"):gmatch("(.-)\r?\n") do lines[#lines + 1] = line end
            end
            f:close()
        end
        nsources = nsources + 1
    end
    sources[file] = lines
    return lines or nil
end

local function function_name(what)
    local name = what:match("'([^']*)'")
    if name then return name end
    if what:find("main chunk", 1, true) then return "(main chunk)" end
    local at = what:match("^function <(.*)>$")
    if at then return "(anonymous function at " .. at .. ")" end
    return what
end

--- Sentry frames (oldest call first) from the lines of a Lua traceback.
function M.frames(tb)
    local frames = {}
    if type(tb) ~= "string" then return frames end
    for line in (tb .. "\n"):gmatch("(.-)\n") do
        line = line:gsub("^%s+", "")
        local file, lineno, what = line:match("^(.-):(%d+): in (.*)$")
        if not file then
            file, what = line:match("^(%[C%]): in (.*)$")
        end
        if file and #frames < M.MAX_FRAMES then
            local fr = {
                filename = file,
                abs_path = file,
                ["function"] = function_name(what),
                lineno = lineno and tonumber(lineno) or nil,
                in_app = file ~= "[C]" and not (own_prefix and file:sub(1, #own_prefix) == own_prefix)
                    and not file:find("^%.%.%..*/baseplate/[%w_/]+%.lua$"),
            }
            local n = fr.lineno
            local lines = n and file ~= "[C]" and source_lines(file)
            if lines and lines[n] then
                fr.context_line = lines[n]
                local pre, post = {}, {}
                for i = math.max(1, n - M.CONTEXT_LINES), n - 1 do pre[#pre + 1] = lines[i] end
                for i = n + 1, math.min(#lines, n + M.CONTEXT_LINES) do post[#post + 1] = lines[i] end
                fr.pre_context, fr.post_context = pre, post
            end
            frames[#frames + 1] = fr
        end
    end
    -- a traceback lists the innermost call first; Sentry wants it last
    local n = #frames
    for i = 1, math.floor(n / 2) do frames[i], frames[n + 1 - i] = frames[n + 1 - i], frames[i] end
    return frames
end

--------------------------------------------------------------------------------
-- The client: a queue and the coroutine that sends it

local Client = {}
Client.__index = Client
Client.__tostring = function(self) return "Sentry client (" .. self.dsn.endpoint .. ")" end
M.Client = Client

local function hostname()
    local f = io.open("/proc/sys/kernel/hostname")
    local h = f and f:read("*l")
    if f then f:close() end
    return h or os.getenv("HOSTNAME") or "localhost"
end

local function event_id()
    return bit.tohex(C.bp_random_id(), 16) .. bit.tohex(C.bp_random_id(), 16)
end

--- A client from parsed options: dsn (a parse_dsn table), environment,
--- release, server_name, sample_rate (0 to 1), ignore_errors (class names).
function M.client(o)
    local http = require("baseplate.clients.http")
    local hc = http.client_from_settings("sentry", {
        timeout = M.SEND_TIMEOUT, connect_timeout = M.SEND_TIMEOUT, max_response_size = 65536,
        pool_connections = 2,
    }, false)
    -- The DSN is the operator's, not a third party's: no address filter.
    hc._cfg.filter = nil
    local ignore = {}
    for _, name in ipairs(o.ignore_errors or {}) do
        ignore[name] = true
        ignore[name:match("([^%.]+)$") or name] = true -- (Baseplate.py names: module.Class)
    end
    local self = setmetatable({
        dsn = o.dsn,
        environment = o.environment,
        release = o.release,
        server_name = o.server_name or hostname(),
        sample_rate = o.sample_rate or 1,
        ignore = ignore,
        session = http.session(hc, "sentry"),
        queue = {}, head = 1, tail = 0,
        sending = false, busy = false,
        paused_until = 0,
        dropped = 0, last_drop_warning = -math.huge,
        last_send_warning = -math.huge, failed = 0,
        recent = {}, recent_i = 0,
        sent = 0,
    }, Client)
    local auth = { "Sentry sentry_version=7", "sentry_client=baseplate.lua/" .. tostring(core.version),
        "sentry_key=" .. o.dsn.public_key }
    if o.dsn.secret_key then auth[#auth + 1] = "sentry_secret=" .. o.dsn.secret_key end
    self._headers = {
        ["X-Sentry-Auth"] = table.concat(auth, ", "),
        ["Content-Type"] = "application/x-sentry-envelope",
    }
    return self
end

function Client:queued() return self.tail - self.head + 1 end

local function warn_dropped(self)
    local now = runtime.now()
    if now - self.last_drop_warning >= M.WARN_INTERVAL then
        slog:warning("Sentry queue is full (%d events): dropped %d event(s)", M.QUEUE_SIZE, self.dropped)
        self.dropped = 0
        self.last_drop_warning = now
    end
end

local send_loop

-- Queue a noted event; the sender starts on the next loop iteration.
local function enqueue(self, ev)
    if self:queued() >= M.QUEUE_SIZE then
        self.dropped = self.dropped + 1
        warn_dropped(self)
        return nil
    end
    ev.event_id = event_id()
    ev.timestamp = runtime.time()
    self.tail = self.tail + 1
    self.queue[self.tail] = ev
    if not self.sending then
        self.sending = true
        runtime.spawn(send_loop, self)
    end
    return ev.event_id
end

-- The same error value reaches the client more than once when it crosses
-- several layers (a script's server_context span, then the script itself):
-- the last few reported are kept to tell.
local function remember(self, err)
    self.recent_i = self.recent_i % 8 + 1
    self.recent[self.recent_i] = err
end

local function seen(self, err)
    for i = 1, #self.recent do
        if self.recent[i] == err then return true end
    end
    return false
end

local function sampled_out(self)
    local r = self.sample_rate
    return r < 1 and (r <= 0 or runtime.random() >= r)
end

-- What an event says about the span it happened in.
local function span_info(ev, span)
    if span then
        local ok, tid = pcall(function() return span.trace_id end)
        if ok then ev.trace_id = tid end
        local ok2, name = pcall(function() return span.name end)
        if ok2 then ev.span_name = name end
    end
end

--- Report an error value. `where`: span (its trace ID and name become
--- tags, its name the transaction), request ({method, url, query_string}),
--- transaction. Returns the event ID, or nil when it is not sent (ignored,
--- sampled out, already reported, queue full).
function Client:capture_error(err, where)
    if err == nil or err == false then return nil end
    local class, msg, tb = M.describe(err)
    if self.ignore[class] then return nil end
    remember(self, err)
    if sampled_out(self) then return nil end
    where = where or {}
    local ev = { kind = "exception", class = class, message = msg, traceback = tb,
        request = where.request, transaction = where.transaction, level = "error", handled = where.handled }
    span_info(ev, where.span)
    if not ev.transaction then ev.transaction = ev.span_name end
    return enqueue(self, ev)
end

--- Report a message (level "info" unless given).
function Client:capture_message(msg, level, where)
    if sampled_out(self) then return nil end
    where = where or {}
    local ev = { kind = "message", message = tostring(msg), level = level or "info",
        request = where.request, transaction = where.transaction }
    span_info(ev, where.span)
    if not ev.transaction then ev.transaction = ev.span_name end
    return enqueue(self, ev)
end

--- The event's JSON payload (Sentry's event schema).
function Client:payload(ev)
    local p = {
        event_id = ev.event_id,
        timestamp = ev.timestamp,
        platform = "other",
        level = ev.level,
        logger = "baseplate",
        server_name = self.server_name,
        environment = self.environment,
        release = self.release,
        transaction = ev.transaction,
        sdk = { name = "baseplate.lua", version = tostring(core.version) },
        contexts = { runtime = { name = "LuaJIT", version = jit and jit.version or _VERSION } },
    }
    local tags = {}
    if ev.trace_id then tags.trace_id = ev.trace_id end
    if ev.span_name then tags.span_name = ev.span_name end
    if next(tags) then p.tags = tags end
    if ev.request then p.request = ev.request end
    if ev.kind == "exception" then
        local ex = { type = ev.class, value = ev.message }
        local frames = M.frames(ev.traceback)
        if #frames > 0 then ex.stacktrace = { frames = frames } end
        ex.mechanism = { type = "generic", handled = ev.handled == true }
        p.exception = { values = { ex } }
    else
        p.message = { formatted = ev.message }
    end
    return p
end

local function envelope(self, ev)
    local body = cjson.encode(self:payload(ev))
    return cjson.encode({ event_id = ev.event_id, sent_at = os.date("!%Y-%m-%dT%H:%M:%SZ") }) .. "\n"
        .. cjson.encode({ type = "event", length = #body, content_type = "application/json" }) .. "\n"
        .. body .. "\n"
end

local function warn_send(self, fmt, ...)
    self.failed = self.failed + 1
    local now = runtime.now()
    if now - self.last_send_warning >= M.WARN_INTERVAL then
        slog:warning("Failed to send event to Sentry (%d event(s) lost): " .. fmt, self.failed, ...)
        self.failed = 0
        self.last_send_warning = now
    end
end

-- How long a 429 asks us to wait: X-Sentry-Rate-Limits, else Retry-After.
function M.pause_of(res)
    local limits = res.headers["x-sentry-rate-limits"]
    if limits then
        local longest
        for item in limits:gmatch("[^,]+") do
            local secs, cats = item:match("^%s*(%d+)%s*:([^:]*)")
            if secs and (cats == "" or cats:find("error", 1, true) or cats:find("default", 1, true)) then
                longest = math.max(longest or 0, tonumber(secs))
            end
        end
        if longest then return longest end
    end
    local after = tonumber(res.headers["retry-after"] or "")
    if after and after >= 0 then return after end
    return M.DEFAULT_PAUSE
end

local function send_one(self, ev)
    local ok, res = pcall(self.session.post, self.session, self.dsn.endpoint,
        { body = envelope(self, ev), headers = self._headers })
    if not ok then
        return warn_send(self, "%s", type(res) == "table" and tostring(res.message or res) or tostring(res))
    end
    if res.status == 429 then
        local secs = M.pause_of(res)
        self.paused_until = runtime.now() + secs
        slog:warning("Sentry rate limit: sending paused for %g seconds", secs)
    elseif res.status >= 300 then
        warn_send(self, "%s answered %d", self.dsn.endpoint, res.status)
    else
        self.sent = self.sent + 1
    end
end

-- The background coroutine: sends what is queued, one event at a time,
-- then ends (the next event starts it again).
send_loop = function(self)
    runtime.set_span(nil) -- (not the span of whoever queued the first event)
    runtime.sleep(0)      -- off the request path: from the next loop iteration
    while self.head <= self.tail do
        local wait = self.paused_until - runtime.now()
        if wait > 0 then
            runtime.sleep(wait)
        else
            local ev = self.queue[self.head]
            self.queue[self.head] = nil
            self.head = self.head + 1
            self.busy = true
            local ok, err = pcall(send_one, self, ev)
            self.busy = false
            if not ok then warn_send(self, "%s", tostring(err)) end
        end
    end
    self.head, self.tail = 1, 0
    self.sending = false
end

--- Wait (in a coroutine) until the queue is sent, at most `seconds`; true
--- when nothing is left.
function Client:flush(seconds)
    -- (real time: a test's frozen clock must not make a flush endless)
    local deadline = C.bp_monotonic() + (seconds or 2)
    while (self.head <= self.tail or self.busy) and C.bp_monotonic() < deadline do
        if self.paused_until > runtime.now() then break end
        runtime.sleep(0.01)
    end
    return self.head > self.tail and not self.busy
end

--------------------------------------------------------------------------------
-- The request's side: observers and context.sentry

-- The request line of an HTTP request context (read while it is live).
-- Only the method and the URL: no cookies, no Authorization, no body.
local function request_of(context)
    if type(context) ~= "table" or rawget(context, "_r") == nil then return nil end
    local ok, req = pcall(function()
        local host = context:header("host") or "localhost"
        local qs = context.query_string
        return {
            method = context.method,
            url = "http://" .. host .. context.path,
            query_string = qs ~= "" and qs or nil,
        }
    end)
    return ok and req or nil
end
M.request_of = request_of

local SpanObserver = {}
SpanObserver.__index = SpanObserver

function SpanObserver:on_finish(err)
    if err == nil then return end
    if getmetatable(err) == CoreError and NOT_CRASHES[err.class] then return end
    self.client:capture_error(err, { span = self.span, request = self.request })
end

local Observer = {}
Observer.__index = Observer

function Observer:on_server_span_created(context, span)
    span:register(setmetatable({ client = self.client, span = span, request = request_of(context) },
        SpanObserver))
end

-- context.sentry: the client bound to the request (Baseplate.py's Hub).
local Hub = {}
Hub.__index = Hub
M.Hub = Hub

local function where_of(self)
    local span = self.span
    return { span = span, request = span and request_of(span.context) or nil, handled = true }
end

--- Report `err` (any Lua error value; a string without a traceback gets
--- the caller's). Returns the event ID, or nil when not sent.
function Hub:capture_exception(err)
    if err == nil then error("capture_exception: expected an error value", 2) end
    if type(err) == "string" and not err:find("\nstack traceback:\n", 1, true) then
        err = debug.traceback(err, 2)
    end
    return self.client:capture_error(err, where_of(self))
end

--- Report a message (level "info" unless given). Returns the event ID.
function Hub:capture_message(msg, level)
    if msg == nil then error("capture_message: expected a message", 2) end
    return self.client:capture_message(msg, level, where_of(self))
end

local HubFactory = {}
HubFactory.__index = HubFactory
function HubFactory:make_object_for_context(_, span)
    return setmetatable({ client = self.client, span = span }, Hub)
end

--------------------------------------------------------------------------------
-- Outside requests: the process's client

--- The client configure_observers made last (for code outside requests).
M.current = nil

--- Report an error that ended a coroutine (runtime's hook).
local function coroutine_died(_, err, tb)
    local c = M.current
    if not c then return end
    local text = tb
    if type(err) == "table" then
        local class, msg = M.describe(err)
        text = { class = class, message = msg, traceback = tb }
    end
    c:capture_error(text, {})
end

--- baseplate-script: report the script's error (unless its span did) and
--- wait a little for the queue to be sent.
function M.script_finished(ok, err, tb)
    local c = M.current
    if not c then return end
    if not ok and not seen(c, err) then
        local class, msg = M.describe(err)
        if type(err) == "string" and tb then
            c:capture_error(tb, { transaction = "baseplate-script" })
        else
            c:capture_error({ class = class, message = msg, traceback = tb }, { transaction = "baseplate-script" })
        end
    end
    c:flush(2)
end

--------------------------------------------------------------------------------
-- The factory configure_observers runs

--- configure_observers' factory: installs the observer when sentry.dsn is
--- set (a ConfigurationError naming the key for a bad value).
function M.factory(bp, raw)
    local cfg = config.parse_config(raw, {
        sentry = {
            dsn = config.Optional(config.String, ""),
            environment = config.Optional(config.String, nil),
            release = config.Optional(config.String, nil),
            server_name = config.Optional(config.String, nil),
            sample_rate = config.Optional(config.Percent, 1.0),
            ignore_errors = config.Optional(config.TupleOf(config.String), {}),
        },
    }).sentry
    if cfg.dsn == "" then return false end
    local dsn, why = M.parse_dsn(cfg.dsn)
    if not dsn then error(config.ConfigurationError("sentry.dsn", why), 0) end
    for _, name in ipairs(cfg.ignore_errors) do
        if not name:match("^[%a_][%w_%.]*$") then
            error(config.ConfigurationError("sentry.ignore_errors", "not a class name: " .. config.quote(name)), 0)
        end
    end
    local env = cfg.environment or os.getenv("SENTRY_ENVIRONMENT")
    local client = M.client({
        dsn = dsn,
        environment = (env and env ~= "") and env or "production",
        release = cfg.release or os.getenv("SENTRY_RELEASE"),
        server_name = cfg.server_name,
        sample_rate = cfg.sample_rate,
        ignore_errors = cfg.ignore_errors,
    })
    bp.sentry_client = client
    M.current = client
    bp:register(setmetatable({ client = client }, Observer))
    if bp._context.sentry == nil then
        bp:add_to_context("sentry", setmetatable({ client = client }, HubFactory))
    end
    runtime.set_died_hook(coroutine_died)
    slog:info("Sentry events go to %s", dsn.endpoint)
    return true
end

return M
