-- The app of tests/integration/test-server-timeout-redis.sh: handlers that
-- wait (sleep, a Redis call, a pool slot) past the server timeout.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local redis = require("baseplate.clients.redis")
local runtime = require("baseplate.runtime")

local M = {}

local after = {} -- what handlers did after their timeout, by name

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ cache = redis.RedisClient() })
    local app = http.app(app_config, { baseplate = bp })

    app:get("sleep", "/sleep/{s}", function(r)
        runtime.sleep(tonumber(r.params.s))
        return { slept = true }
    end)
    app:get("medium", "/medium/{s}", function(r) -- (by_endpoint: longer than the default)
        runtime.sleep(tonumber(r.params.s))
        return { slept = true }
    end)
    app:get("fast", "/fast/{s}", function(r) -- (by_endpoint: infinite)
        runtime.sleep(tonumber(r.params.s))
        return { slept = true }
    end)
    -- Catches the interruption, tries to wait again, then answers: the
    -- client must still get the 504, once.
    app:get("stubborn", "/stubborn", function(r)
        local ok, err = pcall(runtime.sleep, 5)
        local ok2, err2 = pcall(runtime.sleep, 5)
        after.stubborn = string.format("ok=%s first=%s second=%s", tostring(ok or ok2), tostring(err), tostring(err2))
        return 200, "a second answer"
    end)
    app:get("after", "/after/{name}", function(r) return after[r.params.name] or "" end)
    -- A Redis call in flight when the timeout fires (BLPOP waits 2 s).
    app:get("blpop", "/blpop", function(r)
        r.cache:execute_command("BLPOP", "never-filled", "2")
        return { done = true }
    end)
    app:get("hold", "/hold", function(r) -- (by_endpoint: infinite) a connection until the test pushes "hold-go"
        local got = r.cache:execute_command("BLPOP", "hold-go", "5")
        return { released = got ~= nil }
    end)
    app:get("get", "/get/{k}", function(r) return { value = r.cache:get(r.params.k) or "(nil)" } end)
    app:get("pool", "/pool", function(r) return bp._context.cache.pool:stats() end)
    -- Never yields for 300 ms: the blocked-loop monitor reports it.
    app:get("busy", "/busy", function(r)
        local t0 = os.clock()
        local x = 0
        while os.clock() - t0 < 0.3 do x = x + 1 end
        return { spun = x > 0 }
    end)
    return app
end

return M
