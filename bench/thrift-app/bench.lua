-- bench/thrift: the Bench service (bench.thrift) in Lua. With
-- `bench.baseplate = true` in the app config, each call also gets a server
-- span of a Baseplate (no observers unless the config sets them).
local thrift = require("baseplate.thrift")

local M = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

function M.make_processor(app_config)
    local schema = thrift.load(HERE .. "bench.thrift")
    local handler = {}
    function handler.add(_, a, b) return a + b end
    local opts = { app_config = app_config }
    if app_config["bench.baseplate"] == "true" then
        local bp = require("baseplate").Baseplate(app_config)
        bp:configure_observers()
        opts.baseplate = bp
    end
    return thrift.processor(schema:service("Bench"), handler, opts)
end

return M
