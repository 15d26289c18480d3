-- The HTTP client's integration test (test-http-client.sh): make_app is the
-- server the client talks to (and a relay that calls it back with an
-- internal client); run is the client side, under baseplate-script.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local client = require("baseplate.clients.http")
local clients = require("baseplate.clients.base")
local cjson = require("cjson")

local M = {}

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_context({ backend = client.InternalClient() })
    local app = http.app(app_config, { baseplate = bp })
    local function echo(request)
        return { method = request.method, path = request.path, query = request.query_string,
                 headers = request.headers, body = request.body }
    end
    for _, m in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE" }) do
        app:route("echo_" .. m, m, "/echo", echo)
    end
    app:get("sleep", "/sleep/{ms}", function(request)
        baseplate.sleep(tonumber(request.params.ms) / 1000)
        return { slept = tonumber(request.params.ms) }
    end)
    app:get("status", "/status/{code}", function(request)
        local code = tonumber(request.params.code)
        return code, { code = code }, { ["X-Status"] = tostring(code) }
    end)
    app:get("redirect", "/redirect", function(request)
        return 302, "", { Location = request.query.to }
    end)
    app:get("large", "/large/{n}", function(request)
        return string.rep("x", tonumber(request.params.n))
    end)
    -- calls /echo on this server with the internal client: what arrived there
    app:get("relay", "/relay", function(request)
        local r = request.backend:get("http://" .. request.headers.host .. "/echo")
        return r:json()
    end)
    return app
end

-- --- the client side ------------------------------------------------------------------

local out = {}
local function ok(name) out[#out + 1] = "ok " .. name end
local function check(name, cond, detail)
    if cond then ok(name) else out[#out + 1] = "FAILED " .. name .. ": " .. tostring(detail) end
end

local function catch(fn, ...)
    local res = { pcall(fn, ...) }
    if res[1] then return nil, res[2] end
    return res[2]
end

function M.run(app_config, args)
    local port = assert(tonumber(args[1]), "port")
    local base = "http://127.0.0.1:" .. port
    local bp = baseplate.Baseplate(app_config)
    bp:configure_context({
        api = client.InternalClient(),
        web = client.ExternalClient(),              -- the defaults
        web6 = client.ExternalClient(),             -- allow_ipv6, the test's port allowed
        hole = client.ExternalClient(),             -- 127.0.0.1 allowed
        retry = client.InternalClient(),            -- max_retries = 2
        small = client.InternalClient(),            -- max_response_size
    })
    local t0 = baseplate.now()
    bp:server_context("client-test", function(context)
        local spans = {}
        context.span:register({
            on_child_span_created = function(_, child)
                local rec = { name = child.name, tags = {} }
                spans[#spans + 1] = rec
                child:register({
                    on_set_tag = function(_, k, v) rec.tags[k] = v end,
                    on_finish = function(_, err) rec.finished, rec.err = true, err end,
                })
            end,
        })
        local api = context.api

        -- methods, query, headers, bodies, JSON
        local r = api:get(base .. "/echo", { query = { b = "x y", a = { 1, 2 } }, headers = { ["X-Custom"] = "yes" } })
        local j = r:json()
        check("GET status", r.status == 200, r.status)
        check("GET method", j.method == "GET", j.method)
        check("query encoded", j.query == "a=1&a=2&b=x%20y", j.query)
        check("custom header sent", j.headers["x-custom"] == "yes", cjson.encode(j.headers))
        check("response headers", r.headers["content-type"] and r.headers["content-type"]:find("json"), r.headers["content-type"])
        for _, m in ipairs({ "post", "put", "patch", "delete" }) do
            r = api[m](api, base .. "/echo", { body = "body-" .. m, headers = { ["Content-Type"] = "text/plain" } })
            j = r:json()
            check(m .. " method and body", j.method == m:upper() and j.body == "body-" .. m, r.body)
        end
        r = api:post(base .. "/echo", { json = { n = 7, s = "é" } })
        j = r:json()
        check("json body", j.body == cjson.encode({ n = 7, s = "é" }) and j.headers["content-type"] == "application/json", r.body)
        r = api:request("PUT", base .. "/echo?x=1", { query = "y=2" })
        check("request() with a query on a query", r:json().query == "x=1&y=2", r.body)

        -- statuses are responses, not errors; a 5xx fails the span
        r = api:get(base .. "/status/404")
        check("404 is a response", r.status == 404 and r.headers["x-status"] == "404", r.status)
        r = api:get(base .. "/status/503")
        check("503 is a response", r.status == 503, r.status)
        local last = spans[#spans]
        check("span name", last and last.name == "api.request", last and last.name)
        check("span tags", last and last.tags["http.method"] == "GET" and last.tags["http.status_code"] == 503
            and last.tags["http.url"] == base .. "/status/503", last and cjson.encode(last.tags))
        check("5xx fails the span", last and last.finished and last.err ~= nil, last and tostring(last.err))
        local s404 = spans[#spans - 1]
        check("404 does not fail the span", s404 and s404.finished and s404.err == nil, s404 and tostring(s404.err))
        api:get(base .. "/echo", { query = { secret = "s" } })
        check("http.url has no query string", spans[#spans].tags["http.url"] == base .. "/echo", spans[#spans].tags["http.url"])

        -- redirects are followed
        r = api:get(base .. "/redirect", { query = { to = "/echo?from=redirect" } })
        check("redirect followed", r.status == 200 and r:json().query == "from=redirect", r.status .. " " .. r.body)
        r = api:get(base .. "/redirect", { query = { to = "/echo" }, allow_redirects = false })
        check("redirect not followed when asked", r.status == 302, r.status)

        -- trace headers: internal sends them, external never
        r = api:get(base .. "/echo")
        j = r:json()
        local sp = spans[#spans]
        check("X-Trace sent", j.headers["x-trace"] == context.span.trace_id, cjson.encode(j.headers))
        check("X-Parent is the calling span", j.headers["x-parent"] == context.span.id,
            j.headers["x-parent"])
        check("X-Span is the child", j.headers["x-span"] ~= nil and j.headers["x-span"] ~= j.headers["x-parent"], j.headers["x-span"])
        check("X-Span names the child span", sp.name == "api.request")
        local hr = context.hole:get(base .. "/echo")
        j = hr:json()
        check("external sends no trace headers", j.headers["x-trace"] == nil and j.headers["x-span"] == nil
            and j.headers["x-edge-request"] == nil, cjson.encode(j.headers))
        check("external: an allow-listed address goes through", hr.status == 200, hr.status)

        -- failures
        local err = catch(api.get, api, "http://127.0.0.1:1/")
        check("dead server: ConnectionError", clients.is_error(err) and err.class == "ConnectionError", tostring(err))
        check("dead server: names client and endpoint",
            clients.is_error(err) and err.client == "api" and err.endpoint and err.command == "GET",
            clients.is_error(err) and (tostring(err.client) .. " " .. tostring(err.endpoint)))
        check("transport error fails the span", spans[#spans].err ~= nil)
        err = catch(context.retry.get, context.retry, "http://127.0.0.1:1/")
        check("max_retries retries a refused connect",
            clients.is_error(err) and err.message:find("after 3 attempts", 1, true), tostring(err))
        local ts = baseplate.now()
        err = catch(api.get, api, base .. "/sleep/3000", { timeout = 0.3 })
        local took = baseplate.now() - ts
        check("timeout: TimeoutError", clients.is_error(err) and err.class == "TimeoutError", tostring(err))
        check("timeout: on time", took >= 0.25 and took < 1.5, took)
        err = catch(context.small.get, context.small, base .. "/large/5000")
        check("response too large", clients.is_error(err) and err.class == "ResponseTooLarge", tostring(err))
        r = context.small:get(base .. "/large/500")
        check("response under the limit", r.status == 200 and #r.body == 500, #r.body)
        -- a body streamed to on_body
        local parts = {}
        r = api:get(base .. "/large/3000000", { on_body = function(chunk) parts[#parts + 1] = chunk end })
        check("stream: every byte, in chunks", r.status == 200 and #table.concat(parts) == 3000000 and #parts > 1
            and r.body == nil, #table.concat(parts) .. " in " .. #parts)
        check("stream: the protocol", r.protocol == "HTTP/1.1", r.protocol)
        err = catch(api.get, api, base .. "/large/3000000", { on_body = function() error("no room") end })
        check("stream: a failing on_body raises BodyCallbackError", clients.is_error(err)
            and err.class == "BodyCallbackError" and err.message:find("no room", 1, true), tostring(err))
        check("stream: and fails the span", spans[#spans].err ~= nil and spans[#spans].err.class == "BodyCallbackError",
            tostring(spans[#spans].err))
        parts = {}
        r = context.small:get(base .. "/large/5000", { on_body = function(chunk) parts[#parts + 1] = chunk end })
        check("stream: max_response_size is for buffered bodies", #table.concat(parts) == 5000, #table.concat(parts))
        err = catch(api.get, api, "ftp://127.0.0.1/")
        check("other schemes refused", clients.is_error(err) and err.class == "InvalidURL", tostring(err))

        -- the address filter
        local web = context.web
        err = catch(web.get, web, base .. "/echo")
        check("external: loopback refused", clients.is_error(err) and err.class == "UnacceptableAddressException"
            and err.message:find("127.0.0.1", 1, true), tostring(err))
        local web6 = context.web6
        err = catch(web6.get, web6, base .. "/echo")
        check("external: loopback refused by address", clients.is_error(err) and err.class == "UnacceptableAddressException"
            and err.message:find("127.0.0.1 is a loopback address", 1, true), tostring(err))
        err = catch(web6.get, web6, "http://rebind.example:" .. port .. "/echo",
            { resolve = { "rebind.example:" .. port .. ":127.0.0.1" } })
        check("external: a name resolving to 127.0.0.1 refused", clients.is_error(err)
            and err.class == "UnacceptableAddressException" and err.address == "127.0.0.1:" .. port, tostring(err))
        err = catch(web6.get, web6, "http://rebind6.example:" .. port .. "/echo",
            { resolve = { "rebind6.example:" .. port .. ":[::1]" } })
        check("external: a name resolving to ::1 refused", clients.is_error(err)
            and err.class == "UnacceptableAddressException" and err.message:find("::1", 1, true), tostring(err))
        err = catch(web6.get, web6, "http://10.1.2.3:" .. port .. "/")
        check("external: private refused", clients.is_error(err) and err.message:find("private", 1, true), tostring(err))
        err = catch(web.get, web, "http://8.8.8.8:22/")
        check("external: port not allowed", clients.is_error(err) and err.message:find("port 22", 1, true), tostring(err))
        err = catch(web.get, web, "http://evil.internal.example/",
            { resolve = { "evil.internal.example:80:93.184.216.34" } })
        check("external: hostname denylist", clients.is_error(err) and err.message:find("host name is denied", 1, true), tostring(err))
        err = catch(context.hole.get, context.hole, base .. "/redirect", { query = { to = "http://127.0.0.2:" .. port .. "/echo" } })
        check("external: a redirect into loopback refused", clients.is_error(err) and err.class == "UnacceptableAddressException"
            and err.message:find("127.0.0.2", 1, true), tostring(err))
        err = catch(api.get, api, "http://public.example:" .. port .. "/",
            { resolve = { "public.example:" .. port .. ":93.184.216.34" } })
        check("internal: a public address refused", clients.is_error(err) and err.class == "UnacceptableAddressException"
            and err.message:find("93.184.216.34", 1, true), tostring(err))

        -- 100 concurrent calls to a slow endpoint take about one call's time
        local n, done, failures = 100, 0, {}
        local tc = baseplate.now()
        for i = 1, n do
            baseplate.spawn(function()
                local okc, res = pcall(api.get, api, base .. "/sleep/500")
                if not okc or res.status ~= 200 then failures[#failures + 1] = tostring(res) end
                done = done + 1
            end)
        end
        while done < n and baseplate.now() - tc < 20 do baseplate.sleep(0.01) end
        local elapsed = baseplate.now() - tc
        check("100 concurrent calls all answered", done == n and #failures == 0, done .. " " .. tostring(failures[1]))
        check("100 concurrent calls in about one call's time", elapsed < 1.5, elapsed)
    end)
    out[#out + 1] = string.format("done in %.2fs", baseplate.now() - t0)
    print(table.concat(out, "\n"))
end

-- Leaves calls in flight when it returns: the loop's shutdown abandons them
-- and closes libcurl's connections (the sanitizer build sees any leak).
function M.abandon(app_config, args)
    local base = "http://127.0.0.1:" .. assert(tonumber(args[1]), "port")
    local c = client.from_config(app_config, "api.", { internal = true })
    local s = client.session(c, "api")
    s:get(base .. "/echo") -- one connection kept alive
    for _ = 1, 5 do
        baseplate.spawn(function() s:get(base .. "/sleep/5000") end)
    end
    baseplate.sleep(0.1)
    print("leaving " .. require("ffi").C.bp_http_calls_in_flight() .. " calls in flight")
end

return M
