-- examples/thrift: the Greeter service (greeter.thrift) in Lua.
--
--   make serve-thrift          (or: baseplate-serve --debug greeter.ini)
--   baseplate-healthcheck thrift 127.0.0.1:9090
local thrift = require("baseplate.thrift")
local Baseplate = require("baseplate").Baseplate
local log = require("baseplate.log").get_logger("greeter")

local M = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

function M.make_processor(app_config)
    local schema = thrift.load(HERE .. "greeter.thrift")
    local InvalidName = schema:struct("InvalidName")
    local bp = Baseplate(app_config)
    bp:configure_observers()

    local counts = {}
    local handler = {}

    -- greet(name): a Greeting, or InvalidName for an empty name.
    function handler.greet(context, name)
        if name == "" then error(InvalidName:new({ message = "a name cannot be empty" })) end
        counts[name] = (counts[name] or 0) + 1
        log:info("greeting %s (trace %s)", name, context.span and context.span.trace_id or "-")
        return { text = "Hello, " .. name .. "!", count = counts[name] }
    end

    -- forget(name), oneway: the caller does not wait.
    function handler.forget(_, name)
        counts[name] = nil
    end

    return thrift.processor(schema:service("Greeter"), handler, { baseplate = bp, app_config = app_config })
end

return M
