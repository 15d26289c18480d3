-- HTTP: libcurl on the event loop, instrumented (docs/http-client.md).
--
--   local http = require("baseplate.clients.http")
--   bp:configure_context({
--       users = http.InternalClient(),   -- first-party services: sends the trace
--       web = http.ExternalClient(),     -- anything else: behind the address filter
--   })
--   -- [app:main] users.timeout = 2 seconds
--   local r = request.users:get("http://users.internal/v1/user", { query = { id = 7 } })
--   r.status, r.headers["content-type"], r.body, r:json()
--   request.web:post("https://example.com/hook", { json = { event = "x" }, timeout = 5 })
--
-- Each call is a child span "{name}.request" of the request's span (tags
-- http.url without its query string, http.method, http.status_code); a
-- 5xx or a failure fails the span. A response of any status is returned
-- (as Python's requests does); a call that got no response raises a client
-- error (baseplate.clients.base): ConnectionError, TimeoutError,
-- UnacceptableAddressException (the filter refused the address),
-- ResponseTooLarge, TooManyRedirects, InvalidURL.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local clients = require("baseplate.clients.base")
local Pool = require("baseplate.clients.pool")
local span_mod = require("baseplate.span") -- (also declares bp_trace_info_t and bp_span_trace)
local cjson = require("cjson")

ffi.cdef([[
size_t bp_trace_info_to_traceparent(const bp_trace_info_t *ti, char *out);
typedef struct bp_http_call_s bp_http_call_t;
typedef struct bp_http_filter_s bp_http_filter_t;
typedef struct {
  double connect_timeout;
  double timeout;
  size_t max_size;
  const bp_http_filter_t *filter;
  const char *ca_file;
  int verify;
} bp_http_options_t;
bp_http_filter_t *bp_http_filter_new(int mode, int allow_ipv6);
int bp_http_filter_add(bp_http_filter_t *f, int list, const char *cidr, char *err, size_t errlen);
int bp_http_filter_add_port(bp_http_filter_t *f, int list, int port);
int bp_http_filter_check(const bp_http_filter_t *f, const char *ip, int port, char *why, size_t whylen);
void bp_http_filter_free(bp_http_filter_t *f);
int bp_http_call_new(const char *method, const char *url, const bp_http_options_t *opts,
                     bp_http_call_t **out, char *err, size_t errlen);
int bp_http_call_header(bp_http_call_t *c, const char *line);
int bp_http_call_body(bp_http_call_t *c, const char *body, size_t len);
int bp_http_call_resolve(bp_http_call_t *c, const char *entry);
int bp_http_call_start(bp_http_call_t *c, int waiter);
int bp_http_call_stream(bp_http_call_t *c, size_t window, size_t max_size);
const char *bp_http_call_take(bp_http_call_t *c, size_t *len);
int bp_http_call_next(bp_http_call_t *c, int waiter);
int bp_http_call_status(const bp_http_call_t *c);
int bp_http_call_version(const bp_http_call_t *c);
const char *bp_http_call_headers(const bp_http_call_t *c, size_t *len);
const char *bp_http_call_response_body(const bp_http_call_t *c, size_t *len);
const char *bp_http_call_error(const bp_http_call_t *c);
int bp_http_call_failure(const bp_http_call_t *c);
const char *bp_http_call_address(const bp_http_call_t *c);
void bp_http_call_free(bp_http_call_t *c);
int bp_http_calls_in_flight(void);
void bp_http_set_max_connections(int n);
]])

local C = core.C
local ffi_string, ffi_gc = ffi.string, ffi.gc
local type, tostring, tonumber, pairs, ipairs, setmetatable, error, pcall =
    type, tostring, tonumber, pairs, ipairs, setmetatable, error, pcall
local format, lower, upper, concat = string.format, string.lower, string.upper, table.concat

local M = {}

-- http_client.h's constants (tests/lua/test-ffi-decls.lua checks them)
M.FILTER_EXTERNAL, M.FILTER_INTERNAL = 1, 2
M.ALLOW, M.DENY = 1, 2
M.FAIL_NONE, M.FAIL_CONNECT, M.FAIL_REFUSED, M.FAIL_TIMEOUT, M.FAIL_TOOBIG, M.FAIL_OTHER = 0, 1, 2, 3, 4, 5
local FAIL_CONNECT, FAIL_REFUSED, FAIL_TIMEOUT, FAIL_TOOBIG = 1, 2, 3, 4
M.CHUNK = 1 -- BP_HTTP_CHUNK: a streamed call's chunk is ready
local CHUNK = M.CHUNK

-- Baseplate.py's (Advocate's) default port allow list.
M.DEFAULT_PORTS = { 80, 8080, 443, 8443, 8000 }

local len_cell = ffi.new("size_t[1]")
local call_out = ffi.new("bp_http_call_t *[1]")

--------------------------------------------------------------------------------
-- URLs

local function escape(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(ch) return format("%%%02X", ch:byte()) end))
end
M.escape = escape

--- A query string from a table ({ a = 1, b = { 2, 3 } }: a=1&b=2&b=3,
--- names in sorted order) or a string (as it is).
function M.encode_query(q)
    if type(q) == "string" then return q end
    local names = {}
    for k in pairs(q) do names[#names + 1] = tostring(k) end
    table.sort(names)
    local parts = {}
    for _, k in ipairs(names) do
        local v = q[k]
        if v == nil then v = q[tonumber(k)] end
        if type(v) == "table" then
            for _, item in ipairs(v) do parts[#parts + 1] = escape(k) .. "=" .. escape(item) end
        elseif v ~= false then
            parts[#parts + 1] = escape(k) .. "=" .. escape(v == true and "true" or v)
        end
    end
    return concat(parts, "&")
end

-- scheme, host (lowercase, without brackets), the URL without its query
-- string and fragment; nil for something that is no http(s) URL.
local function split_url_uncached(url)
    local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
    if not scheme then return nil end
    local authority = rest:match("^([^/?#]*)")
    local hostport = authority:match("@([^@]*)$") or authority
    local host = hostport:match("^%[([^%]]*)%]") or hostport:match("^([^:]*)")
    local bare = url:match("^([^?#]*)")
    return lower(scheme), lower(host or ""), bare
end

-- A service calls the same few URLs over and over: their parts are kept
-- (up to 512 URLs, then forgotten all at once).
local split_cache, split_count = {}, 0
local function split_url(url)
    local e = split_cache[url]
    if e then return e[1], e[2], e[3] end
    local scheme, host, bare = split_url_uncached(url)
    if not scheme then return nil end
    if split_count >= 512 then split_cache, split_count = {}, 0 end
    split_cache[url] = { scheme, host, bare }
    split_count = split_count + 1
    return scheme, host, bare
end
M.split_url = split_url

-- Where a Location header points, from the URL that answered.
local function join_url(base, loc)
    if loc:match("^%a[%w+.-]*://") then return loc end
    local scheme, authority = base:match("^(%a[%w+.-]*)://([^/?#]*)")
    if loc:sub(1, 2) == "//" then return scheme .. ":" .. loc end
    if loc:sub(1, 1) == "/" then return scheme .. "://" .. authority .. loc end
    local path = base:match("^%a[%w+.-]*://[^/?#]*([^?#]*)")
    local dir = path:match("^(.*/)") or "/"
    if loc:sub(1, 1) == "?" then return scheme .. "://" .. authority .. path .. loc end
    return scheme .. "://" .. authority .. dir .. loc
end
M.join_url = join_url

--------------------------------------------------------------------------------
-- Errors

local function http_error(client, class, message, endpoint, command, extra)
    local e = { class = class, message = message, client = client._name, endpoint = endpoint,
        command = command }
    if extra then for k, v in pairs(extra) do e[k] = v end end
    return clients.error(e)
end

--------------------------------------------------------------------------------
-- Responses

local Response = {}
M.Response = Response
local parse_headers

--- The body decoded as JSON (raises on invalid JSON).
function Response:json()
    local ok, v = pcall(cjson.decode, self.body)
    if not ok then error("response body is not JSON: " .. tostring(v), 2) end
    return v
end

--- Whether the status is below 400 (as requests' Response.ok).
function Response:ok() return self.status < 400 end

Response.__tostring = function(self) return format("<Response [%d]>", self.status) end

-- The headers are parsed when first looked at (most callers read only the
-- status and body).
Response.__index = function(self, k)
    if k == "headers" then
        local h = parse_headers(rawget(self, "_header_text") or "")
        rawset(self, "headers", h)
        return h
    end
    return Response[k]
end

-- Header lines into a table: names in lowercase, repeated headers joined
-- with ", " (as requests does; Set-Cookie too).
function parse_headers(text)
    local h = {}
    for line in text:gmatch("[^\r\n]+") do
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then
            name = lower(name)
            local prev = h[name]
            h[name] = prev and (prev .. ", " .. value) or value
        end
    end
    return h
end

--------------------------------------------------------------------------------
-- One exchange

local function start_call(waiter, call)
    local rc = C.bp_http_call_start(call, waiter)
    return rc
end

-- The options struct of a call, shared (bp_http_call_new copies what it keeps).
local opts_c = ffi.new("bp_http_options_t")

local PROTOCOLS = { [10] = "HTTP/1.0", [11] = "HTTP/1.1", [20] = "HTTP/2", [30] = "HTTP/3" }

local function next_chunk(waiter, call)
    return C.bp_http_call_next(call, waiter)
end

-- The response's status line and headers, as they stand (a streamed call's
-- are known with its first chunk).
local function response_of(call, url, address)
    local p = C.bp_http_call_headers(call, len_cell)
    local v = C.bp_http_call_version(call)
    return setmetatable({
        status = C.bp_http_call_status(call),
        http_version = v / 10,
        protocol = PROTOCOLS[v],
        _header_text = ffi_string(p, len_cell[0]),
        url = url,
        address = address,
    }, Response)
end

-- One request, no redirects followed: the response, or raises. With a
-- sink, the body is streamed to sink(chunk, response) instead of kept.
local function exchange(client, method, url, headers, body, timeout, max_size, resolve, sink)
    local cfg = client._cfg
    opts_c.connect_timeout = cfg.connect_timeout
    opts_c.timeout = timeout or 0
    opts_c.max_size = max_size or cfg.max_response_size
    opts_c.filter = cfg.filter
    opts_c.ca_file = cfg.ca_file
    opts_c.verify = cfg.verify and 1 or 0
    local rc = C.bp_http_call_new(method, url, opts_c, call_out, core.errbuf, core.errbuf_size)
    local _, host = split_url(url)
    if rc ~= core.OK then
        error(http_error(client, rc == core.EINVAL and "InvalidURL" or "ConnectionError",
            format("http %s: %s %s: %s", client._name, method, url, core.errmsg()), host, method), 0)
    end
    local call = ffi_gc(call_out[0], C.bp_http_call_free)
    for i = 1, #headers do
        if C.bp_http_call_header(call, headers[i]) ~= core.OK then
            error(format("http %s: invalid header %q", client._name, headers[i]), 0)
        end
    end
    if body then C.bp_http_call_body(call, body, #body) end
    if resolve then
        for _, entry in ipairs(resolve) do C.bp_http_call_resolve(call, entry) end
    end
    if sink then C.bp_http_call_stream(call, 0, max_size or 0) end
    rc = runtime.await(start_call, call)
    local res
    if sink then
        -- Chunk by chunk: each handed to the sink as it comes (the sink may
        -- wait; the transfer pauses once its window is full), the last one
        -- after the final status.
        while true do
            local p = C.bp_http_call_take(call, len_cell)
            local n = len_cell[0]
            if n > 0 and (rc == CHUNK or rc == core.OK) then
                if res == nil then res = response_of(call, url, ffi_string(C.bp_http_call_address(call))) end
                local ok, err = pcall(sink, ffi_string(p, n), res)
                if not ok then
                    -- abandoned: libcurl drops the transfer and its connection
                    C.bp_http_call_free(ffi_gc(call, nil))
                    local _, _, bare = split_url(url)
                    error(http_error(client, "BodyCallbackError", format("http %s: %s %s: on_body failed: %s",
                        client._name, method, bare or url, tostring(err)), res.address ~= "" and res.address or host,
                        method, { cause = err }), 0)
                end
            end
            if rc ~= CHUNK then break end
            rc = runtime.await(next_chunk, call)
        end
    end
    local address = ffi_string(C.bp_http_call_address(call))
    local endpoint = address ~= "" and address or host
    if rc ~= core.OK then
        local failure = C.bp_http_call_failure(call)
        local detail = ffi_string(C.bp_http_call_error(call))
        if detail == "" then detail = core.strerror(rc) end
        C.bp_http_call_free(ffi_gc(call, nil))
        local class = "ConnectionError"
        if failure == FAIL_REFUSED then
            class = "UnacceptableAddressException"
        elseif rc == core.ETIMEDOUT or failure == FAIL_TIMEOUT then
            class = "TimeoutError"
        elseif failure == FAIL_TOOBIG then
            class = "ResponseTooLarge"
        end
        local _, _, bare = split_url(url)
        error(http_error(client, class, format("http %s: %s %s failed: %s", client._name, method,
            bare or url, detail), endpoint, method,
            { address = address ~= "" and address or nil, connect_failed = failure == FAIL_CONNECT }), 0)
    end
    if res == nil then res = response_of(call, url, address) end
    if not sink then
        local p = C.bp_http_call_response_body(call, len_cell)
        res.body = ffi_string(p, len_cell[0])
    else
        res.status = C.bp_http_call_status(call) -- (the same)
    end
    C.bp_http_call_free(ffi_gc(call, nil))
    return res
end

-- An exchange retried while nothing could be sent (max_retries).
local function exchange_retried(client, ...)
    local tries = client._cfg.max_retries + 1
    for attempt = 1, tries do
        local ok, res = pcall(exchange, client, ...)
        if ok then return res end
        if attempt == tries or not (clients.is_error(res) and res.connect_failed) then
            if attempt > 1 and clients.is_error(res) then
                res.message = res.message .. format(" (after %d attempts)", attempt)
            end
            error(res, 0)
        end
    end
end

local function host_denied(cfg, host)
    for _, pat in ipairs(cfg.hostname_denylist) do
        if pat == host then return true end
        if pat:sub(1, 2) == "*." and (host:sub(-(#pat - 1)) == pat:sub(2) or host == pat:sub(3)) then
            return true
        end
    end
    return false
end

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local MAX_REDIRECTS = 30 -- requests' default

-- The whole call: the request, then the redirects it is sent to (each hop
-- judged by the filter again).
local function perform(client, method, url, headers, body, opts)
    local cfg = client._cfg
    local follow = opts.allow_redirects
    if follow == nil then follow = method ~= "HEAD" end
    local timeout = opts.timeout or cfg.timeout
    local on_body, sink = opts.on_body, nil
    if on_body then
        sink = function(chunk, res)
            -- the body of a redirect that is followed is nobody's
            if follow and REDIRECTS[res.status] and res.headers.location then return end
            return on_body(chunk, res)
        end
    end
    for _ = 0, MAX_REDIRECTS do
        local scheme, host = split_url(url)
        if not scheme then
            error(http_error(client, "InvalidURL", format("http %s: invalid URL %s", client._name, url),
                nil, method), 0)
        end
        if #cfg.hostname_denylist > 0 and host_denied(cfg, host) then
            error(http_error(client, "UnacceptableAddressException",
                format("http %s: refused to connect to %s: the host name is denied by the configuration",
                    client._name, host), host, method), 0)
        end
        local res = exchange_retried(client, method, url, headers, body, timeout, opts.max_size, opts.resolve,
            sink)
        if not (follow and REDIRECTS[res.status]) then return res end
        local loc = res.headers.location
        if not loc then return res end
        url = join_url(url, loc)
        if res.status == 303 and method ~= "HEAD"
            or ((res.status == 301 or res.status == 302) and method == "POST") then
            method, body = "GET", nil
            local kept = {}
            for _, h in ipairs(headers) do
                if not lower(h):match("^content%-") then kept[#kept + 1] = h end
            end
            headers = kept
        end
    end
    error(http_error(client, "TooManyRedirects", format("http %s: more than %d redirects", client._name,
        MAX_REDIRECTS), nil, method), 0)
end

--------------------------------------------------------------------------------
-- Trace headers (internal clients)

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64_char = {}
for i = 1, 64 do b64_char[i - 1] = B64:sub(i, i) end
-- Standard base64 with padding (the edge context: sent on every call that has one).
local function base64(s)
    local out, n = {}, 0
    local band, rshift, lshift, bor = bit.band, bit.rshift, bit.lshift, bit.bor
    for i = 1, #s - 2, 3 do
        local a, b, c = s:byte(i, i + 2)
        local v = bor(lshift(a, 16), lshift(b, 8), c)
        out[n + 1], out[n + 2] = b64_char[rshift(v, 18)], b64_char[band(rshift(v, 12), 63)]
        out[n + 3], out[n + 4] = b64_char[band(rshift(v, 6), 63)], b64_char[band(v, 63)]
        n = n + 4
    end
    local rest = #s % 3
    if rest > 0 then
        local a, b = s:byte(#s - rest + 1, #s)
        local v = bor(lshift(a, 16), lshift(b or 0, 8))
        out[n + 1], out[n + 2] = b64_char[rshift(v, 18)], b64_char[band(rshift(v, 12), 63)]
        out[n + 3] = rest == 2 and b64_char[band(rshift(v, 6), 63)] or "="
        out[n + 4] = "="
    end
    return table.concat(out)
end
M._base64 = base64 -- (tests)

local traceparent_buf = ffi.new("char[56]")

local function add_trace_headers(headers, child, parent)
    local ti = child.trace_info
    headers[#headers + 1] = "X-Trace: " .. ti.trace_id
    if ti.parent_id then headers[#headers + 1] = "X-Parent: " .. ti.parent_id end
    headers[#headers + 1] = "X-Span: " .. ti.span_id
    if ti.sampled then headers[#headers + 1] = "X-Sampled: 1" end
    if ti.flags then headers[#headers + 1] = "X-Flags: " .. format("%d", ti.flags) end
    -- W3C trace context for services that speak only it (formats.md)
    C.bp_trace_info_to_traceparent(C.bp_span_trace(child.c), traceparent_buf)
    headers[#headers + 1] = "traceparent: " .. ffi_string(traceparent_buf, 55)
    local ts = C.bp_span_tracestate(child.c)
    if ts ~= nil then headers[#headers + 1] = "tracestate: " .. ffi_string(ts) end
    -- the edge context's raw bytes (the server span decoded an incoming
    -- X-Edge-Request), base64-encoded as Baseplate.py's clients send them
    local edge = parent.edge_request
    if type(edge) == "string" and edge ~= "" then
        headers[#headers + 1] = "X-Edge-Request: " .. base64(edge)
    end
end

--------------------------------------------------------------------------------
-- The context object

local Session = {}
Session.__index = Session
M.Session = Session

local function header_lines(client, opts, has_json)
    local lines, seen = {}, {}
    local h = opts.headers
    if h ~= nil and type(h) ~= "table" then error("http: opts.headers must be a table", 3) end
    if h then
        for name, value in pairs(h) do
            if type(name) ~= "string" or not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
                error(format("http: invalid header name %q", tostring(name)), 3)
            end
            value = tostring(value)
            if value:find("[\r\n]") then error(format("http: invalid value for header %s", name), 3) end
            local ln = lower(name)
            -- (an internal client's span headers win over the caller's)
            if not (client._internal and (ln:match("^x%-") and (ln == "x-trace" or ln == "x-span"
                or ln == "x-parent" or ln == "x-sampled" or ln == "x-flags" or ln == "x-edge-request")
                or ln == "traceparent" or ln == "tracestate")) then
                seen[ln] = true
                lines[#lines + 1] = name .. (value == "" and ";" or (": " .. value))
            end
        end
    end
    if has_json and not seen["content-type"] then lines[#lines + 1] = "Content-Type: application/json" end
    if not seen["user-agent"] then lines[#lines + 1] = "User-Agent: " .. client._user_agent end
    return lines
end

local function in_child(child, client, method, url, headers, body, opts, bare)
    child:set_tag("http.url", bare)
    child:set_tag("http.method", method)
    local res = perform(client, method, url, headers, body, opts)
    child:set_tag("http.status_code", res.status)
    if res.status >= 500 then
        -- the span fails; the caller still gets the response
        return res, true
    end
    return res, false
end

-- Prometheus: Baseplate.py's http_client_* family, labelled by the
-- client's name and the method (made once per pair), the answer's status
-- on the counter; success is a 2xx or 3xx answer, as Baseplate.py's.
local http_memo = span_mod.label_memo()
local function http_labels(name, method)
    return http_memo(name .. "\0" .. method, "http_client_name", name, "http_method", method:lower())
end

local function traced(child, client, method, url, headers, body, opts, bare)
    child:start()
    local ok, res, failed = pcall(in_child, child, client, method, url, headers, body, opts, bare)
    local prom = rawget(child, "_prom")
    if prom then
        local status = ok and res.status or nil
        child:set_metric_family("http_client", prom, 'http_response_code="' .. (status or "") .. '"',
            status ~= nil and status >= 200 and status < 400)
    end
    if not ok then
        child:finish(res)
        error(res, 0)
    end
    child:finish(failed and { class = "HTTPError", message = format("HTTP %d", res.status) } or nil)
    return res
end

-- One call, traced (a child span) or not (no closure made per call: the
-- JIT does not compile making one).
local function run_call(child, client, method, url, headers, body, opts, bare)
    if child == nil then return perform(client, method, url, headers, body, opts) end
    return traced(child, client, method, url, headers, body, opts, bare)
end

local function with_slot(_, ...)
    return run_call(...)
end

--- Send a request: method ("GET"…), url, and opts: headers (a table), query
--- (a table or a string), body (a string) or json (a value, sent as JSON),
--- timeout (seconds), allow_redirects, max_size (bytes). Returns the
--- Response of any status; raises a client error when none came.
function Session:request(method, url, opts)
    if getmetatable(self) ~= Session then error("request: call it as a method (client:request(...))", 2) end
    if type(method) ~= "string" or method == "" then error("request: method must be a string", 2) end
    if type(url) ~= "string" then error("request: url must be a string", 2) end
    opts = opts or {}
    if type(opts) ~= "table" then error("request: opts must be a table", 2) end
    local client = self._client
    method = upper(method)
    local body = opts.body
    if opts.json ~= nil then
        if body ~= nil then error("request: give body or json, not both", 2) end
        body = cjson.encode(opts.json)
    end
    if body ~= nil and type(body) ~= "string" then error("request: body must be a string", 2) end
    if opts.on_body ~= nil and type(opts.on_body) ~= "function" then
        error("request: on_body must be a function", 2)
    end
    if opts.query ~= nil then
        local q = M.encode_query(opts.query)
        if q ~= "" then
            local base, frag = url:match("^([^#]*)(.*)$")
            url = base .. (base:find("?", 1, true) and "&" or "?") .. q .. frag
        end
    end
    local headers = header_lines(client, opts, opts.json ~= nil)
    local _, _, bare = split_url(url)
    local span = self._span
    local child = nil
    if span ~= nil then
        child = span:make_child(self._name .. ".request")
        if span_mod.prometheus_on() then child._prom = http_labels(self._name, method) end
        if client._internal then add_trace_headers(headers, child, span) end
    end
    local pool = client._pool
    if pool then return pool:with(with_slot, child, client, method, url, headers, body, opts, bare or url) end
    return run_call(child, client, method, url, headers, body, opts, bare or url)
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head", "options" }) do
    local method = upper(m)
    Session[m] = function(self, url, opts)
        if getmetatable(self) ~= Session then error(m .. ": call it as a method (client:" .. m .. "(...))", 2) end
        return self:request(method, url, opts)
    end
end

Session.__tostring = function(self)
    return format("http client %s (%s)", self._name, self._client._internal and "internal" or "external")
end

--------------------------------------------------------------------------------
-- Configuration

local function parse_net(text)
    local f = C.bp_http_filter_new(1, 1)
    local rc = C.bp_http_filter_add(f, 1, text, core.errbuf, core.errbuf_size)
    C.bp_http_filter_free(f)
    if rc ~= core.OK then error(core.errmsg(), 0) end
    return text
end

local function parse_port(text)
    local n = tonumber(text)
    if not n or n % 1 ~= 0 or n < 1 or n > 65535 then error("not a port number: " .. text, 0) end
    return n
end

local spec = {
    pool_connections = config.Optional(config.Integer, 10),
    pool_maxsize = config.Optional(config.Integer, 10),
    max_retries = config.Optional(config.Integer, 0),
    pool_block = config.Optional(config.Boolean, false),
    timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    connect_timeout = config.Optional(config.NonNegative(config.Timespan), 10),
    max_response_size = config.Optional(config.Integer, 64 * 1024 * 1024),
    ca_file = config.Optional(config.String, nil),
    filter = {
        ip_allowlist = config.Optional(config.TupleOf(parse_net), {}),
        ip_denylist = config.Optional(config.TupleOf(parse_net), {}),
        port_allowlist = config.Optional(config.TupleOf(parse_port), nil),
        port_denylist = config.Optional(config.TupleOf(parse_port), {}),
        hostname_denylist = config.Optional(config.TupleOf(config.String), {}),
        allow_ipv6 = config.Optional(config.Boolean, false),
    },
}

local total_cached = 0

--- A client (the factory's state) from a table of settings: the keys of
--- the config spec (filter as a nested table, or false: no address filter,
--- for a destination the operator configured, as a sidecar's collector),
--- and internal = true for an internal client. `name` names it in spans
--- and errors.
function M.client_from_settings(name, s, internal)
    local key_base = name
    local unfiltered = s.filter == false
    local f = s.filter or {}
    local cfg = {
        max_retries = s.max_retries or 0,
        timeout = s.timeout,
        connect_timeout = s.connect_timeout or 10,
        max_response_size = s.max_response_size or 64 * 1024 * 1024,
        ca_file = s.ca_file,
        verify = s.verify ~= false,
        hostname_denylist = {},
    }
    if cfg.max_retries < 0 then
        error(config.ConfigurationError(key_base .. ".max_retries", "must not be negative"), 0)
    end
    if (s.pool_maxsize or 10) < 1 then
        error(config.ConfigurationError(key_base .. ".pool_maxsize", "must be at least 1"), 0)
    end
    local filter = ffi_gc(C.bp_http_filter_new(internal and 2 or 1, f.allow_ipv6 and 1 or 0),
        C.bp_http_filter_free)
    if filter == nil then error("out of memory", 0) end
    if not internal then
        for _, net in ipairs(f.ip_allowlist or {}) do
            if C.bp_http_filter_add(filter, 1, net, core.errbuf, core.errbuf_size) ~= core.OK then
                error(config.ConfigurationError(key_base .. ".filter.ip_allowlist", core.errmsg()), 0)
            end
        end
        for _, net in ipairs(f.ip_denylist or {}) do
            if C.bp_http_filter_add(filter, 2, net, core.errbuf, core.errbuf_size) ~= core.OK then
                error(config.ConfigurationError(key_base .. ".filter.ip_denylist", core.errmsg()), 0)
            end
        end
        for _, p in ipairs(f.port_allowlist or M.DEFAULT_PORTS) do C.bp_http_filter_add_port(filter, 1, p) end
        for _, p in ipairs(f.port_denylist or {}) do C.bp_http_filter_add_port(filter, 2, p) end
        for _, h in ipairs(f.hostname_denylist or {}) do
            cfg.hostname_denylist[#cfg.hostname_denylist + 1] = lower(h)
        end
    end
    cfg.filter = filter
    if unfiltered then cfg.filter = nil end
    local client = {
        _name = name, _cfg = cfg, _internal = internal and true or false,
        _user_agent = "baseplate (libcurl)",
    }
    if s.pool_block then
        -- At most pool_maxsize calls at once; the others wait for a slot.
        client._pool = Pool.new({
            name = "http " .. name, size = s.pool_maxsize or 10,
            timeout = (cfg.timeout and cfg.timeout > 0) and cfg.timeout or 60,
            connect = function() return true end,
        })
    end
    total_cached = total_cached + (s.pool_connections or 10)
    C.bp_http_set_max_connections(total_cached)
    return client
end

M.HTTPContextFactory = clients.Factory

local function make_session(name, span, factory)
    return setmetatable({ _client = factory.client, _name = name, _span = span }, Session)
end

local function in_flight_gauge(batch)
    batch:gauge("requests.in_flight"):replace(C.bp_http_calls_in_flight())
end

--- A session outside a request (a script, the shell): calls are not traced.
function M.session(client, name)
    return setmetatable({ _client = client, _name = name or client._name }, Session)
end

local function build(key_path, raw, parser)
    local s = config.parse_config_at(raw, key_path .. ".", spec)
    for k, v in pairs(parser.kwargs) do s[k] = v end
    local client = M.client_from_settings(key_path, s, parser.internal)
    return clients.context_factory(client._pool, make_session, { client = client, more_gauges = in_flight_gauge })
end

local function parser(internal, kwargs)
    return clients.client_parser(build, { internal = internal, kwargs = kwargs or {} })
end

--- For configure_context: an external client (third-party services; no
--- trace headers; behind the address filter, configured with filter.*).
function M.ExternalClient(kwargs) return parser(false, kwargs) end
--- For configure_context: an internal client (first-party services; sends
--- the trace headers and X-Edge-Request; refuses public addresses).
function M.InternalClient(kwargs) return parser(true, kwargs) end
M.ExternalRequestsClient, M.InternalRequestsClient = M.ExternalClient, M.InternalClient

--- A client and its session straight from a config table (scripts, tests):
--- http.from_config(app_config, "web.", { internal = false }).
function M.from_config(app_config, prefix, opts)
    opts = opts or {}
    local name = prefix:gsub("%.$", "")
    local s = config.parse_config_at(app_config, prefix, spec)
    for k, v in pairs(opts) do if k ~= "internal" then s[k] = v end end
    return M.client_from_settings(name, s, opts.internal)
end

return M
