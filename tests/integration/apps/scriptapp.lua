-- Functions for baseplate-script's tests (test-script*.sh).
local baseplate = require("baseplate")
local log = require("baseplate.log").get_logger("scriptapp")

local M = {}

function M.show(app_config, args)
    local keys = {}
    for k in pairs(app_config) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do print(k .. "=" .. app_config[k]) end
    print("args=" .. table.concat(args, "|") .. " n=" .. #args)
end

local function inner(what)
    error("boom: " .. what)
end

function M.fail(app_config, args)
    inner(args[1] or "nothing")
end

function M.fail_table()
    error({ message = "a table error" })
end

function M.debug()
    log:debug("a debug line")
end

function M.status(app_config, args)
    return tonumber(args[1])
end

-- Waits on the loop, inside a server span: log lines carry its trace ID.
function M.traced(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local n = bp:server_context("nightly", function(context)
        log:info("in span %s", context.span.name)
        baseplate.sleep(0.02)
        local got = 0
        for _ = 1, 3 do
            baseplate.spawn(function() baseplate.sleep(0.01); got = got + 1 end)
        end
        baseplate.sleep(0.05)
        log:info("after waiting: %d", got)
        return got
    end)
    print("spawned finished: " .. n)
end

-- Leaves a timer scheduled: the process still ends when run returns.
function M.leave_timer()
    baseplate.spawn(function() baseplate.sleep(3600) end)
    print("returning")
end

-- Uses Redis through the context, as a cron would.
function M.redis(app_config, args)
    local redis = require("baseplate.clients.redis")
    local bp = baseplate.Baseplate(app_config)
    bp:configure_context({ cache = redis.RedisClient() })
    return bp:server_context("redis_script", function(context)
        assert(context.cache:ping() == "PONG", "PING")
        context.cache:set("script:" .. args[1], "value-" .. args[1])
        print("got " .. context.cache:get("script:" .. args[1]))
        print("incr " .. context.cache:incr("script:counter"))
        return 0
    end)
end

return M
