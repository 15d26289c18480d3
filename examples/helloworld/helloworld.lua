-- The tutorial's "Hello, World" service, in Lua.
--
--   baseplate-serve helloworld.ini
--   curl localhost:9090      ->  {"Hello":"World"}
local http = require("baseplate.http")

local M = {}

local function hello_world(request)
    return { Hello = "World" }
end

function M.make_app(app_config)
    local app = http.app(app_config)
    app:get("hello_world", "/", hello_world)
    return app
end

return M
