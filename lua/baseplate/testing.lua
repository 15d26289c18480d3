-- baseplate.testing: test an application's handlers in the test process,
-- on the real loop, without a listening socket.
--
--   local testing = require("baseplate.testing")
--   local client = testing.client(app)          -- an app of baseplate.http
--   local res = client:get("/users/7")
--   assert(res.status == 200 and res:json().id == 7)
--
-- Each request goes through the real HTTP server (its parser, limits, the
-- request's server span, context and clients) over a socket pair, so what
-- a test sees is what a client would. testing.recorder() records the spans
-- a request made. See docs/testing.md.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
require("baseplate.server.http") -- bp_http_server_* declarations
require("baseplate.server.base") -- bp_server_t

ffi.cdef([[
typedef struct bp_test_exchange_s bp_test_exchange_t;
bp_test_exchange_t *bp_test_exchange_start(bp_server_t *server, const char *request, size_t len,
                                           size_t max_response, int waiter, int *status);
const char *bp_test_exchange_response(const bp_test_exchange_t *x, size_t *len);
void bp_test_exchange_free(bp_test_exchange_t *x);
int bp_server_adopt(bp_server_t *server, int fd);
void bp_log_capture(int on, int quiet);
const char *bp_log_captured(size_t *len);
void bp_log_capture_clear(void);
void bp_clock_freeze(int on);
void bp_clock_advance(double seconds);
void bp_clock_reset(void);
int bp_test_connect(bp_server_t *server);
]])

local C = core.C
local format, lower = string.format, string.lower

local M = {}

--------------------------------------------------------------------------------
-- Responses

local Response = {}
Response.__index = Response
M.Response = Response

--- The body decoded as JSON (cjson); raises on a body that is not JSON.
function Response:json()
    return require("cjson").decode(self.body)
end

--- A header's value by name, whatever its case (repeated fields joined by
--- ", "), or nil.
function Response:header(name)
    return self.headers[lower(name)]
end

Response.__tostring = function(self)
    return format("Response(%d, %d bytes)", self.status, #self.body)
end

local function dechunk(body)
    local out, pos = {}, 1
    while true do
        local size_line_end = body:find("\r\n", pos, true)
        if not size_line_end then error("testing: a chunked body ends early", 0) end
        local size = tonumber(body:sub(pos, size_line_end - 1):match("^%x+"), 16)
        if not size then error("testing: a chunk size is not hexadecimal", 0) end
        pos = size_line_end + 2
        if size == 0 then break end
        out[#out + 1] = body:sub(pos, pos + size - 1)
        pos = pos + size + 2
    end
    return table.concat(out)
end

-- The response in `raw` (one response; the server closed after it).
local function parse_response(raw)
    local head_end = raw:find("\r\n\r\n", 1, true)
    if not head_end then error("testing: the server closed without a complete response", 0) end
    local head, body = raw:sub(1, head_end - 1), raw:sub(head_end + 4)
    local status_line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
    local version, status, reason = status_line:match("^(HTTP/%d%.%d) (%d%d%d) ?(.*)$")
    if not version then error("testing: not an HTTP response: " .. status_line, 0) end
    local headers = {}
    for line in (rest .. "\r\n"):gmatch("(.-)\r\n") do
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then
            name = lower(name)
            headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
        end
    end
    local te = headers["transfer-encoding"]
    if te and lower(te):find("chunked", 1, true) then
        body = dechunk(body)
    elseif headers["content-length"] then
        body = body:sub(1, tonumber(headers["content-length"]) or #body)
    end
    return setmetatable({ status = tonumber(status), reason = reason, protocol = version,
                          headers = headers, body = body }, Response)
end

--------------------------------------------------------------------------------
-- The client

local Client = {}
Client.__index = Client
M.Client = Client

--- A test client for `app` (made with baseplate.http.app): its own server
--- with no listener. opts: timeout (seconds a request may take, default
--- 10), max_response (bytes, default 64 MiB), server (a table of
--- bp_http_server_options_t fields: max_body_size, header_timeout…).
function M.client(app, opts)
    if type(app) ~= "table" or app.c == nil then
        error("testing.client: expected an application made with baseplate.http.app()", 2)
    end
    opts = opts or {}
    local o = ffi.new("bp_http_server_options_t")
    C.bp_http_server_options_init(o)
    for k, v in pairs(opts.server or {}) do o[k] = v end
    local c = C.bp_http_server_start(app.c, nil, o, core.errbuf, core.errbuf_size)
    if c == nil then error("testing.client: " .. core.errmsg(), 2) end
    return setmetatable({ app = app, c = c, core = ffi.cast("bp_server_t *", c),
                          timeout = opts.timeout or 10, max_response = opts.max_response or 64 * 1024 * 1024,
                          default_headers = opts.headers or {} }, Client)
end

local status_cell = ffi.new("int[1]")
local len_cell = ffi.new("size_t[1]")

local function start_exchange(waiter, self, request, call)
    call.x = C.bp_test_exchange_start(self.core, request, #request, self.max_response, waiter, status_cell)
    return status_cell[0]
end

local function query_string(q)
    if type(q) == "string" then return q end
    local keys = {}
    for k in pairs(q) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    local function esc(s)
        return (tostring(s):gsub("[^%w%-%._~]", function(ch) return format("%%%02X", ch:byte()) end))
    end
    for _, k in ipairs(keys) do parts[#parts + 1] = esc(k) .. "=" .. esc(q[k]) end
    return table.concat(parts, "&")
end

--- Send one request and return its Response. opts: headers (a table),
--- query (a table or a string), body (a string), json (a value sent as
--- JSON with Content-Type: application/json). Raises when the server
--- closes without answering, or after the client's timeout.
function Client:request(method, path, opts)
    if self.closed then error("testing: the client is closed", 2) end
    opts = opts or {}
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
        error("testing: the path must start with /", 2)
    end
    if opts.query then
        local q = query_string(opts.query)
        if q ~= "" then path = path .. (path:find("?", 1, true) and "&" or "?") .. q end
    end
    local body = opts.body
    local headers = {}
    for k, v in pairs(self.default_headers) do headers[lower(k)] = { k, tostring(v) } end
    for k, v in pairs(opts.headers or {}) do headers[lower(k)] = { k, tostring(v) } end
    if opts.json ~= nil then
        body = require("cjson").encode(opts.json)
        if not headers["content-type"] then headers["content-type"] = { "Content-Type", "application/json" } end
    end
    body = body ~= nil and tostring(body) or nil
    local lines = { format("%s %s HTTP/1.1", method, path) }
    if not headers["host"] then lines[#lines + 1] = "Host: testing" end
    for _, kv in pairs(headers) do
        if kv[1]:lower() ~= "connection" and kv[1]:lower() ~= "content-length" then
            lines[#lines + 1] = kv[1] .. ": " .. kv[2]
        end
    end
    lines[#lines + 1] = "Connection: close"
    if body then lines[#lines + 1] = "Content-Length: " .. #body end
    local request = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")

    local call = {}
    local rc = runtime.await_timeout(self.timeout, start_exchange, self, request, call)
    local x = call.x
    if x == nil then error("testing: cannot start the request: " .. core.strerror(rc), 2) end
    local raw
    if rc == core.OK then
        local p = C.bp_test_exchange_response(x, len_cell)
        raw = ffi.string(p, len_cell[0])
    end
    C.bp_test_exchange_free(x)
    if rc == core.ETIMEDOUT then
        error(format("testing: %s %s: no response within %g seconds", method, path, self.timeout), 2)
    elseif rc ~= core.OK then
        error(format("testing: %s %s: %s", method, path, core.strerror(rc)), 2)
    end
    local ok, res = pcall(parse_response, raw)
    if not ok then error(format("testing: %s %s: %s", method, path, res), 2) end
    return res
end

for _, m in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS" }) do
    Client[lower(m)] = function(self, path, opts) return self:request(m, path, opts) end
end

--- Stop the client's server (requests in flight finish first).
function Client:close()
    if not self.closed then
        self.closed = true
        C.bp_http_server_stop(self.c)
    end
end

--------------------------------------------------------------------------------
-- The Thrift client

--- A client of `service` (schema:service(name)) whose calls are served by
--- `processor` (baseplate.thrift.processor) through the real Thrift server
--- (THeader framing, the server span, context, exceptions), over socket
--- pairs: no listening socket. Returns the client (the one of
--- baseplate.clients.thrift) and a function that stops its server. opts:
--- timeout (seconds a call may take, default 10), size (connections, 4),
--- protocol ("binary" or "compact"), server (a table of
--- bp_thrift_server_options_t fields: max_frame_size, message_timeout…).
function M.thrift_client(processor, service, opts)
    require("baseplate.server.thrift") -- the server's declarations
    local thrift = require("baseplate.thrift")
    local thrift_client = require("baseplate.clients.thrift")
    if getmetatable(processor) ~= thrift.Processor then
        error("testing.thrift_client: expected a processor made with baseplate.thrift.processor()", 2)
    end
    if type(service) ~= "table" or type(service.methods) ~= "table" then
        error("testing.thrift_client: expected a service (schema:service(name))", 2)
    end
    opts = opts or {}
    local o = ffi.new("bp_thrift_server_options_t")
    C.bp_thrift_server_options_init(o)
    for k, v in pairs(opts.server or {}) do o[k] = v end
    local bp = processor.baseplate
    local c = C.bp_thrift_server_start(bp and bp.c or nil, processor.trust_trace_headers and 1 or 0,
        processor.id, nil, o, core.errbuf, core.errbuf_size)
    if c == nil then error("testing.thrift_client: " .. core.errmsg(), 2) end
    local server = ffi.cast("bp_server_t *", c)
    local stopped = false
    local timeout = opts.timeout or 10
    local target = {
        timeout = timeout, where = "(testing)",
        socket = function()
            if stopped then return core.ECANCELED end
            return C.bp_test_connect(server)
        end,
    }
    local pool = thrift_client.pool(target, {
        size = opts.size or 4, timeout = timeout, max_age = 0, max_connection_attempts = 1,
        protocol = opts.protocol or "binary", max_frame_size = opts.max_frame_size or 16 * 1024 * 1024,
    }, "testing", "testing")
    local client = thrift_client.client(service, pool, "testing")
    local function stop()
        if not stopped then
            stopped = true
            pool:close()
            C.bp_server_stop(server)
        end
    end
    return client, stop
end

--------------------------------------------------------------------------------
-- The clock

local Clock = {}
Clock.__index = Clock
M.Clock = Clock

--- Stop the clock that baseplate.now(), baseplate.time(), signatures
--- (baseplate.lib.crypto), pool connection ages, server timeouts' deadlines
--- and Sentry's timestamps read; returns a Clock. Sleeps and timers keep
--- real time.
function M.freeze_clock()
    C.bp_clock_freeze(1)
    return setmetatable({}, Clock)
end

--- Move the clock on by `seconds` (frozen or running).
function Clock:advance(seconds)
    if type(seconds) ~= "number" or seconds ~= seconds then
        error("testing: advance expects a number of seconds", 2)
    end
    C.bp_clock_advance(seconds)
end

--- Let the clock run again from where it stands.
function Clock:thaw()
    C.bp_clock_freeze(0)
end

--- Give back the real clock (what every test should do when done).
function Clock:reset()
    C.bp_clock_reset()
end
M.reset_clock = function() C.bp_clock_reset() end

--------------------------------------------------------------------------------
-- Capturing log lines

local Capture = {}
Capture.__index = Capture
M.Capture = Capture

--- Keep every log line written from now on (by Lua and by the core), as
--- records: message, level, name (the logger), traceID (the trace of the
--- request whose code logged it), process, module, lineno, exc_info.
--- opts.quiet: keep them instead of writing them. One capture at a time.
function M.capture_logs(opts)
    C.bp_log_capture(1, (opts and opts.quiet) and 1 or 0)
    C.bp_log_capture_clear()
    return setmetatable({}, Capture)
end

--- The records kept so far, oldest first.
function Capture:records()
    local p = C.bp_log_captured(len_cell)
    local text = ffi.string(p, len_cell[0])
    local cjson = require("cjson")
    local out = {}
    for line in text:gmatch("[^\n]+") do
        local ok, rec = pcall(cjson.decode, line)
        if ok then out[#out + 1] = rec end
    end
    return out
end

--- The records whose message contains `text` (plainly), oldest first.
function Capture:find(text)
    local out = {}
    for _, r in ipairs(self:records()) do
        if type(r.message) == "string" and r.message:find(text, 1, true) then out[#out + 1] = r end
    end
    return out
end

--- Forget what was kept so far.
function Capture:clear() C.bp_log_capture_clear() end

--- Stop capturing (and forget).
function Capture:stop() C.bp_log_capture(0, 0) end

--------------------------------------------------------------------------------
-- Recording spans

local Recorder = {}
Recorder.__index = Recorder
M.Recorder = Recorder

--- A Baseplate observer that records every span (server spans, and the
--- client and local spans made under them): register it with
--- bp:register(testing.recorder()). Each record has name, kind ("server",
--- "client", "local"), trace_id, id, parent_id, tags, counters (incr_tag
--- totals), logs, finished, error (nil, or what the span failed with) and
--- children (records).
function M.recorder()
    return setmetatable({ spans = {} }, Recorder)
end

local function watch(self, span, parent)
    local rec = { name = span.name, kind = span.kind, trace_id = span.trace_id, id = span.id,
                  parent_id = span.parent_id, tags = {}, counters = {}, logs = {}, children = {},
                  finished = false }
    self.spans[#self.spans + 1] = rec
    if parent then parent.children[#parent.children + 1] = rec end
    span:register({
        on_set_tag = function(_, key, value) rec.tags[key] = value end,
        on_incr_tag = function(_, key, delta) rec.counters[key] = (rec.counters[key] or 0) + delta end,
        on_log = function(_, name, payload) rec.logs[#rec.logs + 1] = { name = name, payload = payload } end,
        on_child_span_created = function(_, child) watch(self, child, rec) end,
        on_finish = function(_, err)
            rec.finished = true
            rec.error = err
        end,
    })
    return rec
end

function Recorder:on_server_span_created(context, span)
    watch(self, span, nil)
end

--- The records of spans named `name` (all spans without it), oldest first.
function Recorder:find(name)
    local out = {}
    for _, r in ipairs(self.spans) do
        if name == nil or r.name == name then out[#out + 1] = r end
    end
    return out
end

--- The last server span recorded, or nil.
function Recorder:server_span()
    for i = #self.spans, 1, -1 do
        if self.spans[i].kind == "server" then return self.spans[i] end
    end
    return nil
end

--- Forget what was recorded.
function Recorder:clear()
    self.spans = {}
end

return M
