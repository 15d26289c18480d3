-- Applications and a [shell] setup function for baseplate-shell's tests.
local baseplate = require("baseplate")
local http = require("baseplate.http")

local M = {}

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    local config = require("baseplate.lib.config")
    bp:configure_context({ greeting = config.Optional(config.String, "") })
    local app = http.app(app_config, { baseplate = bp })
    app:get("hello_world", "/", function() return { Hello = "World" } end)
    return app
end

-- An application with a Redis client in its context (context.cache).
function M.make_redis_app(app_config)
    local redis = require("baseplate.clients.redis")
    local bp = baseplate.Baseplate(app_config)
    bp:configure_context({ cache = redis.RedisClient() })
    return http.app(app_config, { baseplate = bp })
end

function M.setup(env, env_banner)
    env.models = { user = "User", count = 3 }
    env_banner.models = "Models module"
    env.baseplate = baseplate
    env_banner.baseplate = "The baseplate module"
end

return M
