-- The tutorial's "Hello, World" service, in Lua, wired to Baseplate: every
-- request gets a server span, the observers configured in helloworld.ini
-- turn spans into metrics, and log lines carry the request's traceID.
-- Two more routes use the clients of the request context: PostgreSQL
-- (request.db) and Redis (request.redis); each call is a child span.
--
--   baseplate-serve helloworld.ini
--   curl localhost:9090          ->  {"Hello":"World"}
--   curl localhost:9090/time     ->  {"now":"2026-11-29 20:51:34.123456+00"}
--   curl localhost:9090/visits   ->  {"visits":1}
local baseplate = require("baseplate")
local http = require("baseplate.http")
local postgres = require("baseplate.clients.postgres")
local redis = require("baseplate.clients.redis")

local M = {}

local function hello_world(request)
    return { Hello = "World" }
end

-- The handler waits for PostgreSQL without blocking: other requests are
-- served meanwhile.
local function time(request)
    local rows = request.db:query("SELECT now()::text AS now")
    return { now = rows[1].now }
end

local function visits(request)
    return { visits = request.redis:incr("helloworld:visits") }
end

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    -- db.url and redis.url (and the pools' other keys) come from [app:main].
    bp:configure_context({
        db = postgres.PostgresClient(),
        redis = redis.RedisClient(),
    })

    local app = http.app(app_config, { baseplate = bp })
    app:get("hello_world", "/", hello_world)
    app:get("time", "/time", time)
    app:get("visits", "/visits", visits)
    return app
end

return M
