-- HTTP applications in Lua: routes, the request object, responses.
--
--   local http = require("baseplate.http")
--   function M.make_app(app_config)
--       local app = http.app()
--       app:get("hello_world", "/", function(request) return { Hello = "World" } end)
--       return app
--   end
--
-- A handler gets a Request and returns one of:
--   a table                      -> 200, rendered as JSON
--   a string                     -> 200, text/plain
--   nil                          -> 204 No Content
--   status, body [, headers]     -> that status; body a table (JSON) or string
--   http.response{status=, body=, headers=, content_type=}
-- An error raised by the handler gives a 500 and a logged traceback; raise
-- http.abort(status[, body]) to answer with a status instead.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local log = require("baseplate.log")
local cjson = require("cjson")

ffi.cdef([[
typedef struct bp_app_s bp_app_t;
typedef struct bp_request_s bp_request_t;
bp_app_t *bp_app_new(void);
void bp_app_free(bp_app_t *app);
int bp_app_add_lua_route(bp_app_t *app, const char *name, const char *method,
                         const char *pattern, int lua_handler, char *err, size_t errlen);
int bp_app_route_count(const bp_app_t *app);
const char *bp_app_find_route(const bp_app_t *app, const char *method, const char *path);

const char *bp_request_method(const bp_request_t *req);
const char *bp_request_path(const bp_request_t *req, size_t *len);
const char *bp_request_query(const bp_request_t *req, size_t *len);
const char *bp_request_body(const bp_request_t *req, size_t *len);
int bp_request_header_count(const bp_request_t *req);
int bp_request_header_at(const bp_request_t *req, int i, const char **name, size_t *name_len,
                         const char **value, size_t *value_len);
const char *bp_request_header(const bp_request_t *req, const char *name, size_t *len);
int bp_request_http_version(const bp_request_t *req);
const char *bp_request_route_name(const bp_request_t *req);
int bp_request_param_count(const bp_request_t *req);
int bp_request_param_at(const bp_request_t *req, int i, const char **name, const char **value,
                        size_t *value_len);
const char *bp_request_remote_addr(const bp_request_t *req);

int bp_response_header(bp_request_t *req, const char *name, size_t name_len,
                       const char *value, size_t value_len);
int bp_response_send(bp_request_t *req, int status, const char *content_type,
                     const char *body, size_t body_len);
int bp_response_sent(const bp_request_t *req);
int bp_response_start(bp_request_t *req, int status, const char *content_type);
int bp_response_write(bp_request_t *req, const char *data, size_t len, int waiter);
int bp_response_finish(bp_request_t *req);
int bp_response_abort(bp_request_t *req);
void bp_app_set_baseplate(bp_app_t *app, struct bp_baseplate_s *bp, int trust_trace_headers);
struct bp_span_s *bp_request_span(bp_request_t *req);
void bp_request_set_error(bp_request_t *req, const char *error_class);
const char *bp__json_buffer(void);
size_t bp_http_error_body(int status, const char *reason, char *buf, size_t size);
]])

local C = core.C
local ffi_string, ffi_cast = ffi.string, ffi.cast
local type, tostring, pairs, setmetatable = type, tostring, pairs, setmetatable
local xpcall, traceback = xpcall, debug.traceback
local encode = cjson.encode
-- Table bodies: the core's encoder (src/json.c) writes what cjson.encode
-- would, straight into a buffer the response copies; it declines what it
-- does not encode exactly as cjson does, and cjson decides. Only inside the
-- bundled tools (not under a plain LuaJIT).
local json_c_ok, json_c = pcall(require, "baseplate.json_c")
local json_encode = json_c_ok and json_c.encode or nil
local lower, gsub, char, tonumber = string.lower, string.gsub, string.char, tonumber

local M = {}

local server_log = log.get_logger("baseplate.server.http")

local error_buf_size = 1024
local error_buf = ffi.new("char[?]", error_buf_size)

--- The body of every error the server answers by itself:
--- {"error": 400, "reason": "…"} (reason defaults to the status text).
function M.error_body(status, reason)
    local n = C.bp_http_error_body(status, reason and tostring(reason):sub(1, 160) or nil,
        error_buf, error_buf_size)
    return ffi_string(error_buf, n)
end

--- abort() with the server's error body: status and a short reason.
function M.abort_error(status, reason)
    M.abort(status, M.error_body(status, reason), { ["Content-Type"] = "application/json" })
end

-- Scratch cells for out-parameters, allocated once.
local len_cell = ffi.new("size_t[1]")
local len2_cell = ffi.new("size_t[1]")
local str_cell = ffi.new("const char *[1]")
local str2_cell = ffi.new("const char *[1]")
local req_ptr_t = ffi.typeof("bp_request_t *")

-- Lua handlers by id; the C router knows routes by these ids.
local handlers = {}
local handler_apps = {} -- id -> the App (for its Baseplate)

----------------------------------------------------------------------------
-- Applications

local App = {}
App.__index = App

--- A new application. `app_config` (optional) is kept as app.config.
--- opts.baseplate: a Baseplate whose server span each request gets (with
--- its observers and context: request.span, request.<name>);
--- opts.trust_trace_headers: read X-Trace & co. from requests (default:
--- the app config's baseplate.trust_trace_headers, else false).
function M.app(app_config, opts)
    local c = C.bp_app_new()
    if c == nil then error("out of memory", 2) end
    local app = setmetatable({ c = ffi.gc(c, C.bp_app_free), config = app_config, routes = {} }, App)
    if opts and opts.baseplate then
        local trust = opts.trust_trace_headers
        if trust == nil and app_config then
            local cfg = require("baseplate.lib.config").parse_config(app_config, {
                baseplate = { trust_trace_headers = require("baseplate.lib.config").Optional(
                    require("baseplate.lib.config").Boolean, false) },
            })
            trust = cfg.baseplate.trust_trace_headers
        end
        app:set_baseplate(opts.baseplate, trust)
    end
    return app
end

--- Give every request of this app a server span of `bp` (a Baseplate).
function App:set_baseplate(bp, trust_trace_headers)
    if type(bp) ~= "table" or bp.c == nil then error("set_baseplate: expected a Baseplate", 2) end
    self.baseplate = bp
    C.bp_app_set_baseplate(self.c, bp.c, trust_trace_headers and 1 or 0)
    return self
end

--- Add a route. `method` is "GET", "POST", … or "*" for any; `pattern` is a
--- path with `{param}` segments and an optional trailing `*rest` segment.
function App:route(name, method, pattern, handler)
    if type(name) ~= "string" or name == "" then error("route: name must be a non-empty string", 2) end
    if type(pattern) ~= "string" then error("route " .. name .. ": pattern must be a string", 2) end
    if type(handler) ~= "function" then error("route " .. name .. ": handler must be a function", 2) end
    if self.routes[name] then error("route " .. name .. ": a route with this name already exists", 2) end
    local id = #handlers + 1
    handlers[id] = handler
    handler_apps[id] = self
    local rc = C.bp_app_add_lua_route(self.c, name, method and method:upper() or "*", pattern, id,
        core.errbuf, core.errbuf_size)
    if rc ~= 0 then
        handlers[id] = nil
        error("route " .. name .. ": " .. core.errmsg(), 2)
    end
    self.routes[name] = { method = method, pattern = pattern }
    return self
end

--- The route `method` `path` would reach (its name), or nil.
function App:find_route(method, path)
    local name = C.bp_app_find_route(self.c, method, path)
    if name == nil then return nil end
    return ffi_string(name)
end

--- Supply the health check the server's /health endpoint runs:
--- fn(probe) with probe "readiness", "liveness" or "startup"; a true result
--- is healthy, false or an error is not. The server fails readiness by
--- itself once it is shutting down.
function App:health_check(fn)
    if type(fn) ~= "function" then error("health_check: expected a function", 2) end
    self.is_healthy = fn
    return self
end

for _, m in ipairs({ "get", "post", "put", "delete", "patch", "options" }) do
    local method = m:upper()
    App[m] = function(self, name, pattern, handler)
        return self:route(name, method, pattern, handler)
    end
end

----------------------------------------------------------------------------
-- Requests

local function hex_char(h) return char(tonumber(h, 16)) end

local function unescape(s)
    if not s:find("[%%+]") then return s end
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", hex_char))
end
M.unescape = unescape

--- Parse a query string into a table; repeated keys give the last value
--- (all values are in the second table returned).
function M.parse_query(q)
    local args, multi = {}, {}
    for pair in q:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=(.*)$")
        if not k then k, v = pair, "" end
        k, v = unescape(k), unescape(v)
        args[k] = v
        local list = multi[k]
        if list then list[#list + 1] = v else multi[k] = { v } end
    end
    return args, multi
end

local span_module
local function span_mod()
    if not span_module then span_module = require("baseplate.span") end
    return span_module
end

local getters = {}

function getters.method(self) return ffi_string(C.bp_request_method(self._r)) end

function getters.path(self)
    local p = C.bp_request_path(self._r, len_cell)
    return ffi_string(p, len_cell[0])
end

function getters.query_string(self)
    local p = C.bp_request_query(self._r, len_cell)
    return ffi_string(p, len_cell[0])
end

function getters.query(self)
    return (M.parse_query(self.query_string))
end
getters.args = getters.query

function getters.body(self)
    local p = C.bp_request_body(self._r, len_cell)
    return ffi_string(p, len_cell[0])
end

function getters.headers(self)
    local r = self._r
    local h = {}
    for i = 0, C.bp_request_header_count(r) - 1 do
        C.bp_request_header_at(r, i, str_cell, len_cell, str2_cell, len2_cell)
        local k = lower(ffi_string(str_cell[0], len_cell[0]))
        local v = ffi_string(str2_cell[0], len2_cell[0])
        local old = h[k]
        h[k] = old and (old .. ", " .. v) or v
    end
    return h
end

function getters.params(self)
    local r = self._r
    local p = {}
    for i = 0, C.bp_request_param_count(r) - 1 do
        C.bp_request_param_at(r, i, str_cell, str2_cell, len_cell)
        p[ffi_string(str_cell[0])] = unescape(ffi_string(str2_cell[0], len_cell[0]))
    end
    return p
end

function getters.route_name(self) return ffi_string(C.bp_request_route_name(self._r)) end

function getters.remote_addr(self) return ffi_string(C.bp_request_remote_addr(self._r)) end

function getters.http_version(self)
    local v = C.bp_request_http_version(self._r)
    return string.format("%d.%d", math.floor(v / 10), v % 10)
end

local Request = {}

--- The first header called `name` (any case), or nil.
function Request:header(name)
    local p = C.bp_request_header(self._r, name, len_cell)
    if p == nil then return nil end
    return ffi_string(p, len_cell[0])
end

--- The body decoded as JSON; raises abort(400) when it is not JSON.
function Request:json()
    local ok, v = pcall(cjson.decode, self.body)
    if not ok then M.abort_error(400, "request body is not valid JSON") end
    return v
end

--- The request's server span (a baseplate.span Span), or nil without a
--- Baseplate.
function getters.span(self)
    local c = C.bp_request_span(self._r)
    if c == nil then return nil end
    return span_mod().wrap(c, self)
end

local request_mt = {
    __index = require("baseplate.baseplate").context_index(getters, Request),
}
M.Request = Request

----------------------------------------------------------------------------
-- Responses

local Response = {}
Response.__index = Response
local response_marker = Response

--- An explicit response: {status=200, body=string|table, headers={}, content_type=}.
function M.response(t)
    return setmetatable(t or {}, Response)
end

local Stream = {}
Stream.__index = Stream

--- A streamed response: fn(write) is called with a function that sends one
--- piece of the body (waiting while the client is slow to read); the body
--- is chunked (HTTP/1.1). An error in fn closes the connection, so the
--- client sees an incomplete body.
function M.stream(fn, status, headers, content_type)
    if type(fn) ~= "function" then error("stream: expected a function", 2) end
    return setmetatable({ fn = fn, status = status or 200, headers = headers,
                          content_type = content_type }, Stream)
end

local Abort = {}
Abort.__index = Abort
Abort.__tostring = function(self) return "HTTP " .. tostring(self.status) end

--- Stop the handler and answer with `status` (and optional body/headers).
function M.abort(status, body, headers)
    error(setmetatable({ status = status, body = body, headers = headers }, Abort), 0)
end

local JSON = "application/json"
local TEXT = "text/plain; charset=utf-8"
local INTERNAL_ERROR = M.error_body(500)

local function apply_headers(r, headers, content_type)
    if headers then
        for k, v in pairs(headers) do
            k, v = tostring(k), tostring(v)
            if lower(k) == "content-type" then
                content_type = v
            elseif C.bp_response_header(r, k, #k, v, #v) ~= 0 then
                server_log:warning("dropping invalid response header %q", k)
            end
        end
    end
    return content_type
end

-- The answer to a failure: 500 with a JSON reason.
local function send_internal_error(r)
    local rc = C.bp_response_send(r, 500, JSON, INTERNAL_ERROR, #INTERNAL_ERROR)
    return rc
end

-- A body cjson refuses (a function, NaN, a too sparse array...) is the
-- handler's error: a 500, logged; returns (status, error) for request_job.
local function body_failed(r, err)
    local msg = tostring(err):gsub("^[^\n]-:%d+: ", "")
    C.bp_request_set_error(r, "ValueError")
    server_log:error("cannot send the response of route %s: %s", ffi_string(C.bp_request_route_name(r)), msg)
    return send_internal_error(r), msg
end

local function send(r, status, body, headers, content_type)
    content_type = apply_headers(r, headers, content_type)
    local tb = type(body)
    if tb == "table" then
        content_type = content_type or JSON
        local n = json_encode and json_encode(body)
        if n then
            local rc = C.bp_response_send(r, status, content_type, C.bp__json_buffer(), n)
            return rc
        end
        local encoded, json = pcall(encode, body)
        if not encoded then return body_failed(r, json) end
        body = json
    elseif tb == "nil" then
        body = ""
    elseif tb ~= "string" then
        body = tostring(body)
    end
    local rc = C.bp_response_send(r, status, content_type or TEXT, body, #body)
    return rc
end

local function start_write(waiter, r, data)
    local rc = C.bp_response_write(r, data, #data, waiter)
    return rc
end


local function stream_response(r, s)
    local content_type = apply_headers(r, s.headers, s.content_type)
    if C.bp_response_start(r, s.status, content_type or TEXT) ~= 0 then
        -- (a status a stream cannot have: 1xx, 204, 304, not a number)
        server_log:error("route %s cannot stream a response with status %s; sent 500 instead",
            ffi_string(C.bp_request_route_name(r)), tostring(s.status))
        C.bp_request_set_error(r, "ValueError")
        return send_internal_error(r)
    end
    local function write(data)
        data = tostring(data)
        local rc = runtime.await(start_write, r, data)
        if rc ~= core.OK then error("the client went away", 2) end
    end
    local ok, err = xpcall(s.fn, traceback, write)
    if not ok then
        server_log:exception("streamed response failed in route " .. ffi_string(C.bp_request_route_name(r))
            .. ": " .. tostring(err):match("^[^\n]*"), { traceback = err })
        local rc = C.bp_response_abort(r)
        return rc
    end
    local rc = C.bp_response_finish(r)
    return rc
end

-- A table raised by a handler (a ClientError, an app's own error object)
-- keeps its class and message, with the traceback of where it was raised:
-- what the span, the log and Sentry get (its __tostring is the text a
-- string error would have had).
local Failure = {}
Failure.__tostring = function(f) return f.traceback end

local function error_handler(err)
    local mt = getmetatable(err)
    if mt == Abort then return err end
    if type(err) == "table" then
        local msg = rawget(err, "message")
        if msg == nil then
            msg = (type(mt) == "table" and mt.__tostring) and tostring(err) or span_mod().error_class(err)
        end
        msg = tostring(msg)
        -- (from where error() was called: the frame of error itself may show)
        local info = debug.getinfo(2, "S")
        local level = (info and info.what == "C") and 3 or 2
        return setmetatable({ class = span_mod().error_class(err), message = msg, error = err,
                              traceback = traceback(msg, level) }, Failure)
    end
    return traceback(tostring(err), 2)
end

local function render(r, ok, a, b, c)
    if not ok then
        if getmetatable(a) == Abort then
            local body = a.body
            if body == nil and type(a.status) == "number" then
                return send(r, a.status, M.error_body(a.status), a.headers, JSON)
            end
            return send(r, a.status, body, a.headers)
        end
        local route = ffi_string(C.bp_request_route_name(r))
        local text = tostring(a)
        local msg = text:match("^[^\n]*")
        if getmetatable(a) == Failure and a.class ~= "Error" then msg = a.class .. ": " .. msg end
        server_log:exception("unhandled error in route " .. route .. ": " .. msg, { traceback = text })
        return send_internal_error(r)
    end
    local ta = type(a)
    if ta == "table" then
        local mt = getmetatable(a)
        if mt == response_marker then
            return send(r, a.status or 200, a.body, a.headers, a.content_type)
        elseif mt == Stream then
            return stream_response(r, a)
        end
        return send(r, 200, a)
    elseif ta == "string" then
        return send(r, 200, a)
    elseif ta == "number" then
        return send(r, a, b, c)
    elseif ta == "nil" then
        return send(r, 204, "")
    end
    return send(r, 200, tostring(a))
end

-- Runs in a worker coroutine for each request of a Lua route.
local serving = runtime.serving
local observe_pending = runtime.observe_pending

local function request_job(req, handler_id)
    local r = ffi_cast(req_ptr_t, req) -- req: the request's address, a number
    local sp = C.bp_request_span(r) ~= nil
    local bp = sp and handler_apps[handler_id].baseplate or nil
    local request = setmetatable({ _r = r, _bp = bp }, request_mt)
    -- (the core made the request's span: its Lua observers hear of it now,
    -- with this request as the context)
    if sp and observe_pending[0] > 0 then span_mod().adopt(C.bp_request_span(r), request) end
    serving(request)
    local ok, a, b, c = xpcall(handlers[handler_id], error_handler, request)
    local timed_out = rawget(request, "_timed_out")
    if timed_out then -- (a server timeout: 504, whatever the handler did)
        ok, a = false, setmetatable({ status = 504 }, Abort)
        C.bp_request_set_error(r, "ServerTimeout")
        if sp then
            span_mod().note_error(C.bp_request_span(r), require("baseplate.server_timeout").error_of(timed_out))
        end
    end
    if not ok and sp and getmetatable(a) ~= Abort then
        C.bp_request_set_error(r, span_mod().error_class(a))
        span_mod().note_error(C.bp_request_span(r), a)
    end
    -- (no pcall around render: a trace resumed inside it could not return
    -- through the pcall frame; send catches what can fail, cjson's errors)
    local _, render_err = render(r, ok, a, b, c)
    if render_err and sp then span_mod().note_error(C.bp_request_span(r), render_err) end
    if observe_pending[0] > 0 then span_mod().drain() end
end

-- How a request appears in the SIGUSR1 dump.
function request_mt.__tostring(self)
    return "request " .. self.method .. " " .. self.path .. " (route " .. self.route_name .. ")"
end

runtime.set_job(runtime.PROTOCOL_HTTP, request_job)

-- A request job died (an error outside the handler's protection, such as a
-- response header whose name cannot be made a string): answer 500 if
-- nothing was sent yet.
request_mt.__job_died = function(request)
    local r = type(request) == "table" and rawget(request, "_r")
    if r and C.bp_response_sent(r) == 0 then
        C.bp_request_set_error(r, "InternalError")
        send_internal_error(r)
    end
end

return M
