-- The Prometheus and introspection tests' application
-- (tests/integration/test-prometheus.sh): routes that answer, fail and
-- sleep, a child client span, and a pool whose one connection a request
-- holds while another waits for it.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local pool_mod = require("baseplate.clients.pool")

local M = {}

-- A context factory with a pool, as the clients have (base.lua).
local Factory = {}
Factory.__index = Factory
function Factory:make_object_for_context() return self end

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local factory = setmetatable({
        pool = pool_mod.new({ name = "things", size = 1, timeout = 5, connect = function() return {} end }),
    }, Factory)
    bp:configure_context({ things = factory })
    local app = http.app(app_config, { baseplate = bp })
    app:get("hello", "/", function() return { Hello = "World" } end)
    app:get("fail", "/fail", function() error("boom") end)
    app:get("sleep", "/sleep/{ms}", function(request)
        baseplate.sleep(tonumber(request.params.ms) / 1000)
        return "slept"
    end)
    app:get("missing", "/missing/{what}", function() return 404, "no such thing" end)
    app:get("call", "/call", function(request)
        request.span:make_child("things.fetch"):with(function() end)
        return "called"
    end)
    app:get("hold", "/hold/{ms}", function(request)
        request.things.pool:with(function() baseplate.sleep(tonumber(request.params.ms) / 1000) end)
        return "held"
    end)
    for i = 1, 12 do -- twelve routes: more label sets than a small max_series holds
        app:get("r" .. i, "/r" .. i, function() return "r" end)
    end
    return app
end

return M
