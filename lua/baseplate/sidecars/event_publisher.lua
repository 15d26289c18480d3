-- baseplate-event-publisher: the sidecar that takes events from the POSIX
-- queue /events-{name} (baseplate.lib.events) and POSTs them in batches to
-- the event collector, as Baseplate.py's baseplate.sidecars.event_publisher
-- (docs/event-publisher.md; formats.md "Events").
--
-- A batch is at most 500 KiB of framed JSON, sent when full or one second
-- after its first event: gzip'd, to {scheme}://{collector.hostname}/v{version}
-- with the X-Signature HMAC of the uncompressed body. A batch is kept until
-- the collector takes it (2xx) or refuses it (4xx: it would be refused
-- again); failures and 5xx are tried again with exponential backoff, for
-- as long as it takes, while the queue holds what comes meanwhile. On
-- SIGINT or SIGTERM the batch in hand is sent once more, and put back on
-- the queue for the next run if that fails.
--
-- The work runs in one coroutine on the loop (src/cli/event_publisher.c
-- parses the command line): waits on the queue and the POSTs yield.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local message_queue = require("baseplate.lib.message_queue")
local events = require("baseplate.lib.events")
local http = require("baseplate.clients.http")
local log = require("baseplate.log")

ffi.cdef([[
int bp_gzip(const void *in, size_t len, const char **out, size_t *out_len);
int bp_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen, char out[65]);
]])

local C = core.C
local format, concat = string.format, table.concat

local M = {}

M.MAX_BATCH_SIZE = 500 * 1024 -- bytes of one batch's body (uncompressed)
M.MAX_BATCH_AGE = 1.0         -- seconds from a batch's first event to its POST
M.POLL = 0.2                  -- the longest wait on the queue (signals are seen this often)

local logger = log.get_logger("baseplate.sidecars.event_publisher")

--------------------------------------------------------------------------------
-- Batches (formats.md "Events"): v1 a JSON array of the events; v2 the
-- Thrift JSON of a struct whose field 1 is the list of events,
-- {"1":{"lst":["rec",N,e1,…]}}.

local FRAMES = {
    [1] = { head = function() return "[" end, tail = "]" },
    [2] = { head = function(n) return '{"1":{"lst":["rec",' .. n .. "," end, tail = "]}}" },
}

local Batch = {}
Batch.__index = Batch
M.Batch = Batch

--- An empty batch for collector `version` (1 or 2) of at most `max_size`
--- bytes.
function M.new_batch(version, max_size)
    local frame = FRAMES[version]
    if not frame then error("unsupported collector version " .. tostring(version), 2) end
    return setmetatable({ frame = frame, max_size = max_size or M.MAX_BATCH_SIZE, items = {}, n = 0,
        bytes = 0, started = nil }, Batch)
end

--- The body's size with `extra` more bytes in one more event.
function Batch:size_with(extra)
    local n = self.n + (extra and 1 or 0)
    local bytes = self.bytes + (extra or 0)
    return #self.frame.head(n) + bytes + (n > 1 and n - 1 or 0) + #self.frame.tail
end

--- Add an event (its serialized bytes) if it fits: true, or false when the
--- batch is full (send it, then add the event to the next one).
function Batch:add(item)
    if self.n > 0 and self:size_with(#item) > self.max_size then return false end
    self.n = self.n + 1
    self.items[self.n] = item
    self.bytes = self.bytes + #item
    if self.n == 1 then self.started = runtime.now() end
    return true
end

--- The framed body.
function Batch:serialize()
    return self.frame.head(self.n) .. concat(self.items, ",") .. self.frame.tail
end

--------------------------------------------------------------------------------
-- The signing key. Read from the INI file (key.secret, base64, as the
-- reference) or from the secrets store (key.secret_name: the secret's
-- current version). This one function is where the store is read.

--- The current version of secret `name` (simple or versioned) in the
--- secrets store at `path` (baseplate.lib.secrets, which reads the file
--- again when it is replaced). Errors name the secret, never its value.
local stores = {}
function M.read_secret(path, name)
    local secrets = require("baseplate.lib.secrets")
    local store = stores[path]
    if not store then
        store = secrets.SecretsStore(path)
        stores[path] = store
    end
    local ok, raw = pcall(store.get_raw, store, name)
    if not ok then error(runtime.message_of(raw), 0) end
    if raw.type == "versioned" then return store:get_versioned(name).current end
    if raw.type == "simple" or raw.type == nil then return store:get_simple(name) end
    error(format("%s: secret type %s cannot sign", name, tostring(raw.type)), 0)
end

--- The key that signs the batches, from the parsed configuration.
function M.signing_key(cfg)
    if cfg.key.secret ~= nil then return cfg.key.secret end
    return M.read_secret(cfg.secrets.path, cfg.key.secret_name)
end

--------------------------------------------------------------------------------
-- Publishing

local mac_buf = ffi.new("char[65]")
local gz_out, gz_len = ffi.new("const char *[1]"), ffi.new("size_t[1]")

--- X-Signature: key={name}, mac={hex HMAC-SHA256 of the body}.
function M.sign(key_name, key, body)
    local rc = C.bp_hmac_sha256_hex(key, #key, body, #body, mac_buf)
    if rc ~= core.OK then error("HMAC-SHA256: " .. core.strerror(rc), 0) end
    return format("key=%s, mac=%s", key_name, ffi.string(mac_buf, 64))
end

--- gzip (one member).
function M.gzip(body)
    local rc = C.bp_gzip(body, #body, gz_out, gz_len)
    if rc ~= core.OK then error("gzip: " .. core.strerror(rc), 0) end
    return ffi.string(gz_out[0], gz_len[0])
end

local function http_date()
    return os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(runtime.time()))
end

local Publisher = {}
Publisher.__index = Publisher
M.Publisher = Publisher

--- A publisher from the parsed configuration, the signing key and a
--- metrics client (or nil).
function M.new_publisher(cfg, key, metrics)
    local client = http.client_from_settings("event_publisher",
        { timeout = cfg.post_timeout, connect_timeout = cfg.post_timeout, filter = false }, false)
    return setmetatable({
        url = format("%s://%s/v%d", cfg.collector.scheme, cfg.collector.hostname, cfg.collector.version),
        key_name = cfg.key.name, key = key, session = http.session(client, "event_publisher"),
        timeout = cfg.post_timeout, backoff = cfg.retry_backoff, max_backoff = cfg.max_retry_backoff,
        metrics = metrics, stopping = function() return false end,
    }, Publisher)
end

local function count(self, name, n)
    if self.metrics then self.metrics:counter(name):increment(n or 1) end
end

-- One POST: "sent", "refused" (4xx) or "failed" (and why).
local function post_once(self, body, headers)
    local t0 = runtime.now()
    local ok, res = pcall(self.session.post, self.session, self.url,
        { body = body, headers = headers, timeout = self.timeout, allow_redirects = false })
    if self.metrics then self.metrics:timer("post"):send(runtime.now() - t0) end
    if not ok then
        count(self, "error.io")
        return "failed", runtime.message_of(res)
    end
    if res.status >= 200 and res.status < 300 then return "sent" end
    count(self, "error.http")
    local excerpt = (res.body or ""):sub(1, 200):gsub("[%c]", " ")
    if res.status >= 400 and res.status < 500 then
        return "refused", format("HTTP %d: %s", res.status, excerpt)
    end
    return "failed", format("HTTP %d: %s", res.status, excerpt)
end

-- Sleep `seconds` in slices, stopping early when the publisher stops.
local function nap(self, seconds)
    local until_t = runtime.now() + seconds
    while not self.stopping() do
        local left = until_t - runtime.now()
        if left <= 0 then return end
        runtime.sleep(left < M.POLL and left or M.POLL)
    end
end

--- Send a batch until the collector takes or refuses it: "sent", "refused",
--- or "stopped" (the publisher stopped while the batch was still failing;
--- `last_try`: one attempt only).
function Publisher:publish(batch, last_try)
    if batch.n == 0 then return "sent" end
    local body = batch:serialize()
    local headers = {
        ["Date"] = http_date(),
        ["User-Agent"] = "baseplate-event-publisher/" .. core.version,
        ["Content-Type"] = "application/json",
        ["Content-Encoding"] = "gzip",
        ["X-Signature"] = M.sign(self.key_name, self.key, body),
    }
    local gz = M.gzip(body)
    logger:debug("sending batch of %d events (%d bytes, %d gzip'd)", batch.n, #body, #gz)
    local delay = self.backoff
    local attempt = 0
    while true do
        attempt = attempt + 1
        headers["Date"] = http_date()
        local outcome, why = post_once(self, gz, headers)
        if outcome == "sent" then
            count(self, "sent", batch.n)
            return "sent"
        elseif outcome == "refused" then
            logger:error("the collector refused a batch of %d events (dropped): %s", batch.n, why)
            count(self, "refused", batch.n)
            return "refused"
        end
        if last_try or self.stopping() then return "stopped" end
        logger:warning("could not send a batch of %d events (attempt %d; again in %gs): %s", batch.n, attempt,
            delay, why)
        nap(self, delay)
        if self.stopping() then
            -- (one more try before giving the events back to the queue)
            outcome = post_once(self, gz, headers)
            if outcome == "sent" then count(self, "sent", batch.n) return "sent" end
            if outcome == "refused" then return "refused" end
            return "stopped"
        end
        delay = math.min(delay * 2, self.max_backoff)
    end
end

--------------------------------------------------------------------------------
-- The main loop

local SPEC = {
    collector = {
        hostname = config.String,
        version = config.Optional(config.Integer, 1),
        scheme = config.Optional(config.OneOf({ http = "http", https = "https" }), "https"),
    },
    key = {
        name = config.String,
        secret = config.Optional(config.Base64, nil),
        secret_name = config.Optional(config.String, nil),
    },
    secrets = { path = config.Optional(config.String, "/var/local/secrets.json") },
    max_queue_size = config.Optional(config.Integer, events.MAX_QUEUE_SIZE),
    post_timeout = config.Optional(config.Float, 3),
    retry_backoff = config.Optional(config.Float, 1),
    max_retry_backoff = config.Optional(config.Float, 60),
}
M.SPEC = SPEC

local function fail(where, msg)
    runtime.fatal(where .. " " .. msg)
end

--- Parse the [event-publisher:NAME] section (`raw`); `where` prefixes
--- errors ("app.ini: [event-publisher:main]").
function M.parse(raw, where)
    local ok, cfg = pcall(config.parse_config, raw, SPEC)
    if not ok then fail(where, runtime.message_of(cfg)) end
    if not FRAMES[cfg.collector.version] then
        fail(where, format("collector.version: expected 1 or 2, got %d", cfg.collector.version))
    end
    if (cfg.key.secret == nil) == (cfg.key.secret_name == nil) then
        fail(where, "key.secret or key.secret_name: give one of them (the signing key, base64;"
            .. " or the name of a secret in the secrets store)")
    end
    if cfg.max_queue_size < 1 then fail(where, "max_queue_size: must be at least 1") end
    if not (cfg.post_timeout > 0) then fail(where, "post_timeout: must be above 0") end
    if not (cfg.retry_backoff > 0) or not (cfg.max_retry_backoff >= cfg.retry_backoff) then
        fail(where, "retry_backoff, max_retry_backoff: must be above 0, the first at most the second")
    end
    return cfg
end

-- Give a batch's events back to the queue (the next run sends them).
local function requeue(queue, batch)
    local lost = 0
    for i = 1, batch.n do
        local ok = pcall(queue.put, queue, batch.items[i], 0)
        if not ok then lost = lost + 1 end
    end
    if lost > 0 then
        logger:error("stopping: %d of %d unsent events did not fit back on the queue and are lost", lost, batch.n)
    else
        logger:warning("stopping: %d unsent events put back on the queue", batch.n)
    end
end

--- baseplate-event-publisher's main. opts: config_file, queue_name, debug.
function M.main(opts)
    local ini = require("baseplate.ini")
    local server = require("baseplate.server")
    local queue_name = opts.queue_name or "main"
    local ok, file = pcall(ini.load, opts.config_file)
    if not ok then runtime.fatal(runtime.message_of(file)) end
    server.configure_logging(file, opts.debug)
    local section = "event-publisher:" .. queue_name
    local raw = file:section(section)
    if not raw then runtime.fatal(format("%s: no [%s] section", file.path, section)) end
    local where = format("%s: [%s]", file.path, section)
    local cfg = M.parse(raw, where)
    local kok, key = pcall(M.signing_key, cfg)
    if not kok then fail(where, "key: " .. runtime.message_of(key)) end
    local metrics
    if (raw["metrics.namespace"] or "") ~= "" or (raw["metrics.endpoint"] or "") ~= "" then
        local mok, m = pcall(require("baseplate.lib.metrics").metrics_client_from_config, raw)
        if not mok then fail(where, runtime.message_of(m)) end
        metrics = m
    end

    local qok, queue = pcall(message_queue.MessageQueue, events.queue_name(queue_name), cfg.max_queue_size,
        events.MAX_EVENT_SIZE, { fallback = true })
    if not qok then runtime.fatal(tostring(queue)) end
    if queue.shrunk then
        logger:warning("%s: this system's limits allow %d messages of at most %d bytes; raise"
            .. " fs.mqueue.msg_max and msgsize_max in /proc/sys/fs/mqueue as root", queue.name,
            queue.max_messages, queue.max_message_size)
    end

    local publisher = M.new_publisher(cfg, key, metrics)
    local stopping = false
    publisher.stopping = function() return stopping end
    runtime.add_signal_handler(function(name)
        if name == "SIGINT" or name == "SIGTERM" then
            if not stopping then logger:info("%s: sending what is in hand, then stopping", name) end
            stopping = true
        end
    end)
    logger:info("publishing %s to %s", queue.name, publisher.url)

    local batch = M.new_batch(cfg.collector.version)
    local function flush(last_try)
        local outcome = publisher:publish(batch, last_try)
        if outcome == "stopped" then requeue(queue, batch) end
        batch = M.new_batch(cfg.collector.version)
    end
    while not stopping do
        local wait = M.POLL
        if batch.n > 0 then
            wait = math.max(0, math.min(wait, batch.started + M.MAX_BATCH_AGE - runtime.now()))
        end
        local got, msg = pcall(queue.get, queue, wait)
        if not got then
            if not message_queue.is_error(msg, "TimedOutError") then error(msg, 0) end
            msg = nil
        end
        if msg and #msg > 0 and not batch:add(msg) then
            flush()
            batch:add(msg)
        end
        if batch.n > 0 and runtime.now() - batch.started >= M.MAX_BATCH_AGE then flush() end
    end
    flush(true)
    queue:close()
    io.stdout:flush()
    C.bp_loop_stop()
    return 0
end

return M
