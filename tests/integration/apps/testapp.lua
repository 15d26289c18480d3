-- An application exercising the HTTP server for the integration tests.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local log = require("baseplate.log").get_logger("testapp")

local M = {}

function M.make_app(app_config)
    local app = http.app(app_config)
    app:get("hello_world", "/", function() return { Hello = "World" } end)
    app:get("text", "/text", function() return "plain text" end)
    app:get("nothing", "/nothing", function() return nil end)
    app:get("status", "/status/{code}", function(request)
        return tonumber(request.params.code), { code = tonumber(request.params.code) }, { ["X-Test"] = "yes" }
    end)
    app:get("params", "/params/{a}/{b}/*rest", function(request)
        return request.params
    end)
    app:get("query", "/query", function(request)
        return { args = request.query, raw = request.query_string }
    end)
    app:get("headers", "/headers", function(request)
        return { ua = request.headers["user-agent"], x = request:header("x-custom"),
                 method = request.method, path = request.path, version = request.http_version }
    end)
    app:post("echo", "/echo", function(request)
        return http.response { status = 201, body = request.body, content_type = "application/octet-stream",
                               headers = { ["X-Length"] = #request.body } }
    end)
    app:post("json", "/json", function(request)
        local v = request:json()
        return { got = v }
    end)
    app:get("error", "/error", function()
        log:info("about to fail")
        error("deliberate failure")
    end)
    -- bodies JSON cannot carry
    app:get("unserializable", "/unserializable/{what}", function(request)
        local what = request.params.what
        if what == "function" then return { f = print } end
        if what == "nan" then return { x = 0 / 0 } end
        return { [1] = 1, [100] = 2 } -- an excessively sparse array
    end)
    -- a response header whose name cannot be made a string: an error past
    -- the handler's own protection
    app:get("bad_header", "/bad_header", function()
        local name = setmetatable({}, { __tostring = function() error("no name") end })
        return 200, "x", { [name] = "v" }
    end)
    -- a body far larger than a socket takes at once (MB megabytes, a digit
    -- per byte so that a reordered or lost piece shows)
    app:get("large", "/large/{mb}", function(request)
        local unit = string.rep("0123456789", 100000) -- 1,000,000 bytes
        return string.rep(unit, tonumber(request.params.mb))
    end)
    app:get("abort", "/abort", function()
        http.abort(403, { error = "forbidden here" })
    end)
    app:get("sleep", "/sleep/{ms}", function(request)
        log:info("sleeping %s ms", request.params.ms)
        local t0 = baseplate.now()
        baseplate.sleep(tonumber(request.params.ms) / 1000)
        return { slept = baseplate.now() - t0 }
    end)
    -- A barrier: each request waits (yielding) until n requests of `key` have
    -- arrived, or 10 s; only handlers that overlap can all reach it.
    local arrived = {}
    app:get("together", "/together/{key}/{n}", function(request)
        local key, n = request.params.key, tonumber(request.params.n)
        arrived[key] = (arrived[key] or 0) + 1
        local t0 = baseplate.now()
        while arrived[key] < n and baseplate.now() - t0 < 10 do baseplate.sleep(0.01) end
        return { together = arrived[key] >= n }
    end)
    app:route("any", "*", "/any", function(request) return { method = request.method } end)
    app:get("config", "/config/{key}", function(request)
        return { value = app_config[request.params.key] }
    end)
    local ffi = require("ffi")
    pcall(ffi.cdef, "int getpid(void);")
    app:get("pid", "/pid", function() return tostring(ffi.C.getpid()) .. "\n" end)
    app:get("stream", "/stream/{n}/{size}", function(request)
        local n, size = tonumber(request.params.n), tonumber(request.params.size)
        return http.stream(function(write)
            for i = 1, n do
                write(string.format("%06d", i) .. string.rep("x", size - 7) .. "\n")
                if i % 100 == 0 then baseplate.sleep(0) end
            end
        end, 200, { ["X-Streamed"] = "yes" })
    end)
    -- a full collection of the Lua heap (test-hostile measures memory)
    app:get("gc", "/gc", function()
        collectgarbage("collect")
        return { kb = collectgarbage("count") }
    end)
    app:get("stream_status", "/stream_status/{code}", function(request)
        return http.stream(function(write) write("never") end, tonumber(request.params.code))
    end)
    app:get("stream_error", "/stream_error", function()
        return http.stream(function(write)
            write("partial\n")
            error("broke half-way")
        end)
    end)
    local sick = false
    app:post("sick", "/sick", function() sick = true return { sick = true } end)
    app:health_check(function(probe)
        if probe == "liveness" then return true end
        return not sick
    end)
    app:get("shutting_down", "/shutting_down", function()
        return { shutting_down = require("baseplate.server").SERVER_STATE.shutting_down }
    end)
    return app
end

return M
