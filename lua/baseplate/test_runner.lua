-- baseplate-test: busted (Debian's lua-busted) run inside the runtime, so
-- that specs run on the event loop and may wait — call a handler through
-- baseplate.testing, query Redis or PostgreSQL, sleep — as handlers do.
-- Command line, output formats and exit status are busted's. See
-- docs/testing.md.
local M = {}

local add_lua51_paths = require("baseplate.lua51_paths")

local Exit = {}

-- Run busted with `args` (its command line); returns the exit status.
local function run(args)
    add_lua51_paths()
    local ok, compat = pcall(require, "busted.compatibility")
    if not ok then
        io.stderr:write("baseplate-test: error: busted is not installed (Debian's lua-busted): ",
            tostring(compat):match("^[^\n]*"), "\n")
        return 1
    end
    -- busted ends with os.exit; here its exit ends the run instead, so the
    -- runtime closes as usual
    compat.exit = function(code) error(setmetatable({ code = code }, Exit), 0) end
    -- luacheck: push ignore 121 122 (busted reads its arguments from the global)
    arg = { [0] = "baseplate-test" }
    for i, a in ipairs(args) do arg[i] = a end
    -- luacheck: pop
    local done, err = pcall(function()
        require("busted.runner")({ standalone = false })
    end)
    if done then return 0 end
    if getmetatable(err) == Exit then
        -- (busted's own exit: 0, or 1 for any number of failures and errors)
        local code = err.code
        if code == true or code == 0 then return 0 end
        return 1
    end
    io.stderr:write("baseplate-test: error: ", tostring(err), "\n")
    return 1
end

--- baseplate-test's main: opts.args is busted's command line.
function M.main(opts)
    require("baseplate.runtime") -- (declares bp_loop_stop)
    local code = run(opts.args or {})
    io.stdout:flush()
    io.stderr:flush()
    require("baseplate.core").C.bp_loop_stop()
    return code
end

return M
