-- The app of tests/integration/test-redis.sh.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local redis = require("baseplate.clients.redis")

local M = {}

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ cache = redis.RedisClient() })
    local queue = redis.MessageQueue("test-queue", redis.pool_from_config(app_config, "cache."))
    local app = http.app(app_config, { baseplate = bp })

    app:get("set", "/set/{k}/{v}", function(r) return { reply = r.cache:set(r.params.k, r.params.v) } end)
    app:get("get", "/get/{k}", function(r) return { value = r.cache:get(r.params.k) or "(nil)" } end)
    app:get("incr", "/incr/{k}", function(r) return { value = r.cache:incr(r.params.k) } end)
    app:get("error", "/error", function(r)
        r.cache:set("not-a-number", "x")
        local ok, err = pcall(r.cache.incr, r.cache, "not-a-number")
        return { ok = ok, class = err.class, message = err.message }
    end)
    app:get("pipeline", "/pipeline", function(r)
        local p = r.cache:pipeline("counts")
        p:set("p1", "a"):incr("p2"):get("p1")
        local res = p:execute()
        return { n = res.n, first = res[1], third = res[3] }
    end)
    app:get("blpop", "/blpop/{ms}", function(r)
        local t0 = baseplate.now()
        local res = r.cache:execute_command("BLPOP", "never-filled", tostring(tonumber(r.params.ms) / 1000))
        return { result = res == nil and "timeout" or "value", waited = baseplate.now() - t0 }
    end)
    app:get("slow", "/slow", function(r)
        -- waits 2 s on the server, longer than the socket timeout
        local ok, err = pcall(r.cache.execute_command, r.cache, "BLPOP", "never-filled", "2")
        return { ok = ok, class = not ok and err.class or nil, message = not ok and tostring(err) or nil }
    end)
    app:get("pool", "/pool", function(r)
        local f = bp._context.cache
        return f.pool:stats()
    end)
    app:get("queue", "/queue/{msg}", function(r)
        queue:put(r.params.msg)
        return { got = queue:get(1) }
    end)
    app:get("queue_empty", "/queue_empty", function(r)
        local ok, err = pcall(queue.get, queue, 1)
        return { ok = ok, class = err.class }
    end)
    return app
end

return M
