-- The HTTP client against nginx (test-http-client-nginx.sh): run is the
-- client side, under baseplate-script; args are nginx's plain HTTP/1.1
-- port, its TLS port (HTTP/2 offered) and a host name for 127.0.0.1.
local baseplate = require("baseplate")
local client = require("baseplate.clients.http")
local clients = require("baseplate.clients.base")

local M = {}

local out = {}
local function check(name, cond, detail)
    if cond then
        out[#out + 1] = "ok " .. name
    else
        out[#out + 1] = "FAILED " .. name .. ": " .. tostring(detail)
    end
end

local function catch(fn, ...)
    local res = { pcall(fn, ...) }
    if res[1] then return nil, res[2] end
    return res[2]
end

-- The process's resident memory now and at its peak, in bytes.
local function memory()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024, tonumber(s:match("VmHWM:%s*(%d+)")) * 1024
end

local MB = 1024 * 1024

function M.run(app_config, args)
    local p1, p2 = assert(tonumber(args[1]), "port"), assert(tonumber(args[2]), "TLS port")
    local base = "http://127.0.0.1:" .. p1
    local tls_base = "https://127.0.0.1:" .. p2
    local bp = baseplate.Baseplate(app_config)
    bp:configure_context({
        api = client.InternalClient(),
        tls = client.InternalClient(),  -- ca_file: nginx's self-signed certificate
        notrust = client.InternalClient(),
        web = client.ExternalClient(),  -- 127.0.0.1 and nginx's port allowed
    })
    local t0 = baseplate.now()
    bp:server_context("nginx-test", function(context)
        local api = context.api

        -- keep-alive: calls one after the other share one connection
        local conns, reqs = {}, {}
        for i = 1, 5 do
            local r = api:get(base .. "/hello")
            conns[i], reqs[i] = r.headers["x-connection"], tonumber(r.headers["x-connection-requests"])
        end
        local same, counting = true, true
        for i = 2, 5 do
            same = same and conns[i] == conns[1]
            counting = counting and reqs[i] == reqs[i - 1] + 1
        end
        check("keep-alive: 5 calls on one connection", same and conns[1] ~= nil, table.concat(conns, ","))
        check("keep-alive: the connection's requests count up", counting, table.concat(reqs, ","))

        -- a name libcurl resolves itself (its threaded resolver's sockets
        -- come and go between the connections' sockets)
        local named_ok = 0
        local name = args[3] or "localhost"
        for _ = 1, 3 do
            local okc, res = pcall(api.get, api, "http://" .. name .. ":" .. p1 .. "/hello")
            if okc and res.status == 200 then named_ok = named_ok + 1 else out[#out + 1] = "info: " .. tostring(res) end
            okc, res = pcall(api.get, api, base .. "/hello")
            if okc and res.status == 200 then named_ok = named_ok + 1 end
        end
        check("calls by name and by address, in turn", named_ok == 6, named_ok)

        -- GET: status, body, headers, query, a custom header
        local r = api:get(base .. "/hello", { query = { a = "1 2" }, headers = { ["X-Custom"] = "yes" } })
        check("GET status and body", r.status == 200 and r.body == "hello from nginx", r.status .. " " .. r.body)
        check("GET content-type", r.headers["content-type"] == "text/plain", r.headers["content-type"])
        check("GET server header", (r.headers["server"] or ""):find("nginx", 1, true), r.headers["server"])
        check("GET query arrives", r.headers["x-query"] == "a=1%202", r.headers["x-query"])
        check("GET custom header arrives", r.headers["x-got-custom"] == "yes", r.headers["x-got-custom"])
        check("HTTP/1.1 on the plain port", r.protocol == "HTTP/1.1" and r.http_version == 1.1
            and r.headers["x-protocol"] == "HTTP/1.1", tostring(r.protocol) .. " " .. tostring(r.headers["x-protocol"]))
        check("HEAD", api:head(base .. "/hello").status == 200)

        -- bodies (nginx reads them and proxies them on; echoed in a header)
        r = api:post(base .. "/post", { body = "a=1&b=2" })
        check("POST body arrives", r.status == 200 and r.headers["x-method"] == "POST"
            and r.headers["x-request-body"] == "a=1&b=2", r.status .. " " .. tostring(r.headers["x-request-body"]))
        r = api:post(base .. "/post", { json = { n = 1 } })
        check("POST json", r.headers["x-request-body"] == '{"n":1}' and r.headers["x-content-type"] == "application/json",
            tostring(r.headers["x-request-body"]) .. " " .. tostring(r.headers["x-content-type"]))
        for _, m in ipairs({ "put", "patch", "delete" }) do
            r = api[m](api, base .. "/post", { body = m .. "-body", headers = { ["Content-Type"] = "text/plain" } })
            check(m .. " body arrives", r.headers["x-method"] == m:upper() and r.headers["x-request-body"] == m .. "-body",
                tostring(r.headers["x-method"]) .. " " .. tostring(r.headers["x-request-body"]))
        end

        -- statuses and redirects
        r = api:get(base .. "/status/404")
        check("404 is a response", r.status == 404 and r.body == "not here", r.status)
        r = api:get(base .. "/status/503")
        check("503 is a response", r.status == 503, r.status)
        r = api:get(base .. "/redirect")
        check("redirect followed", r.status == 200 and r.headers["x-query"] == "from=redirect", r.status)
        r = api:get(base .. "/redirect", { allow_redirects = false })
        check("redirect not followed when asked", r.status == 302 and (r.headers.location or ""):find("/hello", 1, true),
            r.status .. " " .. tostring(r.headers.location))
        local web = context.web
        r = web:get(base .. "/hello")
        check("external: an allowed address", r.status == 200, r.status)
        local err = catch(web.get, web, base .. "/redirect-away")
        check("external: nginx's redirect into loopback refused", clients.is_error(err)
            and err.class == "UnacceptableAddressException" and err.message:find("127.0.0.2", 1, true), tostring(err))

        -- HTTP/2 over TLS (nginx offers h2 by ALPN)
        local tls = context.tls
        r = tls:get(tls_base .. "/hello")
        check("HTTP/2: status and body", r.status == 200 and r.body == "hello from nginx", r.status)
        check("HTTP/2: the response says so", r.protocol == "HTTP/2" and r.http_version == 2, tostring(r.protocol))
        check("HTTP/2: nginx says so", r.headers["x-protocol"] == "HTTP/2.0", r.headers["x-protocol"])
        local h2conn = r.headers["x-connection"]
        local n, done, seen = 10, 0, {}
        for i = 1, n do
            baseplate.spawn(function()
                local okc, res = pcall(tls.get, tls, tls_base .. "/hello")
                seen[i] = okc and res.headers["x-connection"] or tostring(res)
                done = done + 1
            end)
        end
        while done < n do baseplate.sleep(0.005) end
        local multiplexed = true
        for i = 1, n do multiplexed = multiplexed and seen[i] == h2conn end
        check("HTTP/2: 10 calls at once share the one connection", multiplexed, table.concat(seen, ","))
        r = tls:post(tls_base .. "/post", { body = "over h2" })
        check("HTTP/2: POST body arrives", r.headers["x-request-body"] == "over h2", tostring(r.headers["x-request-body"]))
        err = catch(context.notrust.get, context.notrust, tls_base .. "/hello")
        check("TLS: a certificate nobody vouches for is refused", clients.is_error(err) and err.class == "ConnectionError",
            tostring(err))

        -- streaming: the body goes to on_body chunk by chunk
        local whole = api:get(base .. "/small.bin").body
        local parts, first_res = {}, nil
        r = api:get(base .. "/small.bin", { on_body = function(chunk, res)
            parts[#parts + 1] = chunk
            first_res = first_res or res
        end })
        check("stream: the chunks make the body", table.concat(parts) == whole and #whole == 300000, #table.concat(parts))
        check("stream: status and headers known with the first chunk", first_res and first_res.status == 200
            and first_res.headers["content-length"] == "300000", first_res and first_res.status)
        check("stream: the response has no body", r.status == 200 and r.body == nil, type(r.body))
        parts = {}
        r = tls:get(tls_base .. "/small.bin", { on_body = function(chunk)
            parts[#parts + 1] = chunk
            if #parts < 4 then baseplate.sleep(0.02) end -- a slow consumer: the transfer pauses
        end })
        check("stream over HTTP/2 with a slow consumer", table.concat(parts) == whole and r.protocol == "HTTP/2",
            #table.concat(parts))
        parts = {}
        api:get(base .. "/redirect", { on_body = function(chunk) parts[#parts + 1] = chunk end })
        check("stream: a followed redirect's own body is not passed on", table.concat(parts) == "hello from nginx",
            table.concat(parts))

        -- 200 MB streamed: memory stays bounded, the loop keeps running
        local rss0, peak0 = memory()
        local ticks, streaming = 0, true
        baseplate.spawn(function()
            while streaming do baseplate.sleep(0.01); ticks = ticks + 1 end
        end)
        local total, chunks, biggest = 0, 0, 0
        local ts = baseplate.now()
        r = api:get(base .. "/big.bin", { on_body = function(chunk)
            total = total + #chunk
            chunks = chunks + 1
            if #chunk > biggest then biggest = #chunk end
            -- now and then a wait, as a consumer writing elsewhere would: the
            -- window fills and the transfer pauses meanwhile
            if chunks % 64 == 0 then baseplate.sleep(0.002) end
        end })
        local took = baseplate.now() - ts
        streaming = false
        local rss1, peak1 = memory()
        local growth = peak1 - math.max(peak0, rss0)
        check("stream 200 MB: every byte", r.status == 200 and total == 200 * MB, total)
        check("stream 200 MB: chunks no larger than the window (256 KiB)", biggest <= 256 * 1024 and chunks > 100,
            biggest .. " " .. chunks)
        check("stream 200 MB: peak memory grew by less than 32 MB", growth < 32 * MB,
            string.format("RSS %d MB -> %d MB, peak %d MB -> %d MB", rss0 / MB, rss1 / MB, peak0 / MB, peak1 / MB))
        check("stream 200 MB: the loop kept running", ticks >= math.floor(took / 0.01 / 4), ticks .. " ticks in " .. took)
        out[#out + 1] = string.format("info: 200 MB streamed in %.2f s, %d chunks, peak RSS %+.1f MB",
            took, chunks, growth / MB)

        -- a failing on_body aborts the transfer with a client error
        local seen_bytes = 0
        ts = baseplate.now()
        err = catch(api.get, api, base .. "/big.bin", { on_body = function(chunk)
            seen_bytes = seen_bytes + #chunk
            if seen_bytes > MB then error("disk full") end
        end })
        check("on_body error: BodyCallbackError", clients.is_error(err) and err.class == "BodyCallbackError"
            and err.message:find("disk full", 1, true) and err.client == "api" and err.command == "GET", tostring(err))
        check("on_body error: the cause is kept", clients.is_error(err) and tostring(err.cause):find("disk full", 1, true),
            clients.is_error(err) and tostring(err.cause))
        check("on_body error: the transfer stopped", seen_bytes < 8 * MB, seen_bytes)
        r = api:get(base .. "/hello")
        check("on_body error: the next call works", r.status == 200, r.status)

        -- limits
        ts = baseplate.now()
        err = catch(api.get, api, base .. "/big.bin")
        check("buffered: a body over max_response_size is refused", clients.is_error(err)
            and err.class == "ResponseTooLarge", tostring(err))
        check("buffered: refused before it is read", baseplate.now() - ts < 1, baseplate.now() - ts)
        err = catch(api.get, api, base .. "/small.bin", { max_size = 100000 })
        check("buffered: a call's max_size", clients.is_error(err) and err.class == "ResponseTooLarge", tostring(err))
        err = catch(api.get, api, base .. "/big.bin", { max_size = 4 * MB, on_body = function() end })
        check("stream: max_size limits the streamed body", clients.is_error(err) and err.class == "ResponseTooLarge",
            tostring(err))
    end)
    out[#out + 1] = string.format("done in %.2fs", baseplate.now() - t0)
    print(table.concat(out, "\n"))
end

return M
