-- baseplate.testing: an application's handlers called from the test
-- process through the real HTTP server, without a listening socket; a
-- handler that waits on the fixture's real Redis; the span recorder.
local t = require("testlib")
local baseplate = require("baseplate")
local http = require("baseplate.http")
local redis = require("baseplate.clients.redis")
local testing = require("baseplate.testing")

local url = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL")

local function make_app()
    local cfg = { ["cache.url"] = url, ["metrics.namespace"] = "t" }
    local bp = baseplate.Baseplate(cfg)
    bp:configure_context({ cache = redis.RedisClient() })
    local recorder = testing.recorder()
    bp:register(recorder)
    local app = http.app(cfg, { baseplate = bp })
    app:get("hello", "/hello", function(request)
        return { hello = request.query.name or "world" }
    end)
    app:get("user", "/users/{id}", function(request)
        return 200, { id = tonumber(request.params.id) }, { ["X-User"] = request.params.id }
    end)
    app:post("echo", "/echo", function(request)
        return { got = request:json(), type = request.headers["content-type"] }
    end)
    app:get("count", "/count", function(request)
        request.span:incr_tag("counted", 2)
        return { n = request.cache:incr("testing:count") }
    end)
    app:get("boom", "/boom", function() error("kaboom") end)
    app:get("logs", "/logs", function(request)
        require("baseplate.log").get_logger("my.service"):warning("looked at %s", request.path)
        return {}
    end)
    app:get("slow", "/slow", function() baseplate.sleep(2) return {} end)
    app:get("stream", "/stream", function()
        return http.stream(function(write)
            for i = 1, 3 do
                write("part " .. i .. "\n")
                baseplate.sleep(0.01)
            end
        end)
    end)
    return app, recorder, bp
end

local app, recorder = make_app()
local client = testing.client(app)

t.test("GET: status, headers, JSON body, query", function()
    local res = client:get("/hello", { query = { name = "tester & co" } })
    t.eq(res.status, 200)
    t.eq(res:json(), { hello = "tester & co" })
    t.eq(res:header("Content-Type"), "application/json")
    res = client:get("/users/42")
    t.eq(res:json().id, 42)
    t.eq(res.headers["x-user"], "42", "header names in lower case")
    t.eq(client:get("/nothing").status, 404)
end)

t.test("POST with a JSON body", function()
    local res = client:post("/echo", { json = { a = { 1, 2 } } })
    t.eq(res:json(), { got = { a = { 1, 2 } }, type = "application/json" })
    res = client:post("/echo", { body = "not json", headers = { ["Content-Type"] = "text/plain" } })
    t.eq(res.status, 400, "the handler's request:json() refuses it")
end)

t.test("a handler that waits on Redis; its spans recorded", function()
    local r0 = client:get("/count"):json().n
    recorder:clear()
    local res = client:get("/count")
    t.eq(res:json().n, r0 + 1)
    local server = recorder:server_span()
    t.eq(server.name, "count")
    t.eq(server.tags["http.status_code"], 200)
    t.eq(server.tags["http.method"], "GET")
    t.eq(server.counters.counted, 2)
    t.ok(server.finished and server.error == nil, "finished without error")
    t.eq(#server.children, 1)
    t.eq(server.children[1].name, "cache.INCR")
    t.eq(server.children[1].kind, "client")
    t.eq(server.children[1].parent_id, server.id)
end)

t.test("a failing handler: 500, the span's error", function()
    recorder:clear()
    local res = client:get("/boom")
    t.eq(res.status, 500)
    local err = recorder:server_span().error
    t.ok(tostring(err):find("kaboom", 1, true), "the error: " .. tostring(err))
end)

t.test("log lines captured, with the request's trace ID", function()
    local logs = testing.capture_logs({ quiet = true })
    recorder:clear()
    client:get("/logs")
    client:get("/boom")
    local mine = logs:find("looked at /logs")
    t.eq(#mine, 1)
    t.eq(mine[1].level, "WARNING")
    t.eq(mine[1].name, "my.service")
    t.eq(mine[1].traceID, recorder:find("logs")[1].trace_id, "the request's trace")
    local boom = logs:find("unhandled error in route boom")
    t.eq(#boom, 1)
    t.ok(boom[1].exc_info:find("kaboom", 1, true), "with the traceback")
    logs:clear()
    t.eq(#logs:records(), 0)
    logs:stop()
end)

t.test("a streamed (chunked) response is reassembled", function()
    local res = client:get("/stream")
    t.eq(res.status, 200)
    t.eq(res.body, "part 1\npart 2\npart 3\n")
    t.eq(res.headers["transfer-encoding"], "chunked")
end)

t.test("requests at once, each in its own coroutine", function()
    local got, n = {}, 0
    for i = 1, 5 do
        baseplate.spawn(function()
            got[i] = client:get("/users/" .. i):json().id
            n = n + 1
        end)
    end
    t.wait_until(function() return n == 5 end, 5)
    t.eq(got, { 1, 2, 3, 4, 5 })
end)

t.test("the client's timeout", function()
    local quick = testing.client(app, { timeout = 0.2 })
    t.raises("GET /slow: no response within 0.2 seconds", quick.get, quick, "/slow")
    quick:close()
    t.raises("the client is closed", quick.get, quick, "/hello")
end)

t.test("bad use", function()
    t.raises("expected an application made with baseplate.http.app", testing.client, {})
    t.raises("the path must start with /", client.get, client, "hello")
end)

client:close()
t.done()
