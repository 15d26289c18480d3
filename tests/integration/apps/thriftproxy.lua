-- Service A of the Thrift client's integration test: the Test service
-- (thrift/testsvc.thrift) answered by calling another Test service (B,
-- `down.endpoint`) with baseplate.clients.thrift, so that a trace crosses
-- two hops. trace() adds A's own view before B's; the other methods pass
-- B's answers (and exceptions) back.
local thrift = require("baseplate.thrift")
local Baseplate = require("baseplate").Baseplate
local ThriftClient = require("baseplate.clients.thrift").ThriftClient

local M = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

function M.make_processor(app_config)
    local schema = thrift.load(HERE .. "thrift/testsvc.thrift")
    local service = schema:service("Test")
    local bp = Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ down = ThriftClient(service) })
    local handler = {}
    for name in pairs(service.methods) do
        if name ~= "is_healthy" then
            handler[name] = function(context, ...) return context.down[name](context.down, ...) end
        end
    end
    function handler.trace(context)
        local s = context.span
        return string.format("%s %s %s %s|%s", tostring(s.trace_id), tostring(s.id), tostring(s.parent_id),
            context.method, context.down:trace())
    end
    function handler.whoami(context) return "proxy>" .. context.down:whoami() end
    return thrift.processor(service, handler, { baseplate = bp, app_config = app_config })
end

return M
