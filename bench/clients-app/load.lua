-- bench/clients' load: N coroutines in one baseplate-script, each calling
-- one client in a loop for S seconds, with no HTTP server in front.
--
--   baseplate-script clients.ini load:run redis|memcache|http N SECONDS
--
-- The clients come from the app config as a service's would (cache.*,
-- mc.*, web.*); each coroutine runs its loop inside a server span of its
-- own (bp:server_context), so every call is a client span, as in a
-- handler (no observers are configured: the spans are made, nobody
-- watches them). BARE=1 in the environment calls without spans instead.
-- Every reply is checked. Sets the key first (bench_key = bench_value in
-- Redis, mc_key = mc_value in memcached); HTTP calls bench_url. Prints
-- "calls seconds calls_per_second".
local baseplate = require("baseplate")
local redis = require("baseplate.clients.redis")
local memcache = require("baseplate.clients.memcache")
local http = require("baseplate.clients.http")

local M = {}

-- What one call is, for each client: fn(client) raises unless it got the
-- expected reply.
local calls = {
    redis = function(c, key, want)
        local v = c:get(key)
        if v ~= want then error("redis GET " .. key .. ": got " .. tostring(v)) end
    end,
    memcache = function(c, key, want)
        local v = c:get(key)
        if v ~= want then error("memcache get " .. key .. ": got " .. tostring(v)) end
    end,
    http = function(c, url)
        local r = c:get(url)
        if r.status ~= 200 then error("GET " .. url .. ": status " .. r.status) end
    end,
}

-- The client of one coroutine: from the context (spans) or bare.
local function bare_client(kind, app_config)
    if kind == "redis" then
        return redis.monitored("cache", nil, redis.pool_from_config(app_config, "cache.", "cache"))
    elseif kind == "memcache" then
        return memcache.monitored("mc", nil, memcache.pool_from_config(app_config, "mc.", nil, nil, "mc"))
    end
    return http.session(http.from_config(app_config, "web.", { internal = true }), "web")
end

local ctx_name = { redis = "cache", memcache = "mc", http = "web" }

function M.run(app_config, args)
    local kind, n, seconds = args[1], tonumber(args[2]), tonumber(args[3])
    local call = calls[kind]
    if not call or not n or not seconds then
        io.stderr:write("usage: baseplate-script clients.ini load:run redis|memcache|http N SECONDS\n")
        return 2
    end
    local a, b = app_config.bench_key, app_config.bench_value
    if kind == "memcache" then a, b = app_config.mc_key, app_config.mc_value end
    if kind == "http" then a = app_config.bench_url end

    -- the key every call reads
    if kind ~= "http" then bare_client(kind, app_config):set(a, b) end

    local bp, shared
    if os.getenv("BARE") == "1" then
        shared = bare_client(kind, app_config)
    else
        bp = baseplate.Baseplate(app_config)
        bp:configure_observers()
        bp:configure_context({
            cache = redis.RedisClient(),
            mc = memcache.MemcacheClient(),
            web = http.InternalClient(),
        })
    end

    local done, total, failure, t_end = 0, 0, nil, nil
    local t0 = baseplate.now()
    local deadline = t0 + seconds
    local function loop(c)
        local k = 0
        local now = baseplate.now
        while now() < deadline do
            call(c, a, b)
            k = k + 1
        end
        total = total + k
    end
    local function worker()
        local ok, err
        if bp then
            ok, err = pcall(bp.server_context, bp, "bench", function(context) loop(context[ctx_name[kind]]) end)
        else
            ok, err = pcall(loop, shared)
        end
        if not ok and not failure then failure = tostring(err) end
        done = done + 1
        t_end = baseplate.now()
    end
    for _ = 1, n do baseplate.spawn(worker) end
    while done < n do baseplate.sleep(0.01) end
    if failure then error(failure, 0) end
    local elapsed = t_end - t0
    print(string.format("%d %.3f %.0f", total, elapsed, total / elapsed))
end

return M
