-- baseplate: the Lua API of the baseplate service runtime.
--
--   local baseplate = require("baseplate")
--   baseplate.sleep(0.1)          -- yields the current request; the loop goes on
--   baseplate.spawn(fn, a, b)     -- run fn(a, b) concurrently, in its own coroutine
--   baseplate.version             -- the core's version
--   baseplate.Baseplate(app_config) -- spans, observers, the request context
--   baseplate.register_observer_factory(name, prefix, create) -- for configure_observers
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")

local M = {
    version = core.version,
    sleep = runtime.sleep,
    now = runtime.now,
    time = runtime.time,
    spawn = runtime.spawn,
}

-- The observability framework (docs/observers.md), loaded on first use.
local lazy = {
    Baseplate = function() return require("baseplate.baseplate").new end,
    TraceInfo = function() return require("baseplate.span").TraceInfo end,
    Span = function() return require("baseplate.span").Span end,
    register_observer_factory = function() return require("baseplate.baseplate").register_observer_factory end,
}
setmetatable(M, {
    __index = function(t, k)
        local f = lazy[k]
        if not f then return nil end
        local v = f()
        rawset(t, k, v)
        return v
    end,
})

return M
