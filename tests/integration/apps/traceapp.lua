-- The app of tests/integration/test-tracing.sh: spans of every kind for the
-- tracing observer, and a route that calls another service (DOWNSTREAM).
local baseplate = require("baseplate")
local http = require("baseplate.http")
local client = require("baseplate.clients.http")

local M = {}

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ downstream = client.InternalClient() })
    if app_config["down.endpoint"] then -- a Thrift service (apps/thriftapp.lua)
        local thrift = require("baseplate.thrift")
        local ThriftClient = require("baseplate.clients.thrift").ThriftClient
        local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
        local service = thrift.load(here .. "thrift/testsvc.thrift"):service("Test")
        bp:configure_context({ down = ThriftClient(service) })
    end
    local app = http.app(app_config, { baseplate = bp })
    app:get("ok", "/ok", function(request)
        return { sampled = request.span.sampled, trace = request.span.trace_id,
                 traceparent = request.headers.traceparent, tracestate = request.headers.tracestate,
                 span_tracestate = request.span.tracestate }
    end)
    app:get("fail", "/fail", function(request) error("boom") end)
    app:get("child", "/child", function(request)
        request.span:set_tag("color", "blue")
        request.span:set_tag("fresh", true)
        request.span:set_tag("count", 7)
        request.span:incr_tag("things.done", 3)
        request.span:make_child("redis.get"):with(function(span)
            span:set_tag("key", "k\"\n\1")
            baseplate.sleep(0.001)
        end)
        request.span:make_child("geocode", true, "maps"):with(function() end)
        pcall(function()
            request.span:make_child("payments.charge"):with(function() error("declined") end)
        end)
        return {}
    end)
    app:get("call", "/call", function(request)
        local r = request.downstream:get(os.getenv("DOWNSTREAM") .. "/ok")
        return r:json()
    end)
    app:get("thrift", "/thrift", function(request)
        return { whoami = request.down:whoami() }
    end)
    return app
end

return M
