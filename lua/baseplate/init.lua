-- baseplate: the Lua API of the baseplate service runtime.
--
--   local baseplate = require("baseplate")
--   baseplate.sleep(0.1)          -- yields the current request; the loop goes on
--   baseplate.spawn(fn, a, b)     -- run fn(a, b) concurrently, in its own coroutine
--   baseplate.version             -- the core's version
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")

local M = {
    version = core.version,
    sleep = runtime.sleep,
    now = runtime.now,
    spawn = runtime.spawn,
}

return M
