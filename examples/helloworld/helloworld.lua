-- The tutorial's "Hello, World" service, in Lua, wired to Baseplate: every
-- request gets a server span, the observers configured in helloworld.ini
-- turn spans into metrics, and log lines carry the request's traceID.
--
--   baseplate-serve helloworld.ini
--   curl localhost:9090      ->  {"Hello":"World"}
local baseplate = require("baseplate")
local http = require("baseplate.http")

local M = {}

local function hello_world(request)
    return { Hello = "World" }
end

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()

    local app = http.app(app_config, { baseplate = bp })
    app:get("hello_world", "/", hello_world)
    return app
end

return M
