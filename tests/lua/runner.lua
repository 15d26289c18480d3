-- Entry point of bp-lua-test: runs the test file given on the command line
-- inside a runtime coroutine, with the remaining arguments in `arg`.
local M = {}

function M.run(opts)
    local file = opts.args[1]
    local chunk, err = loadfile(file)
    if not chunk then error(err, 0) end
    arg = { [0] = file }
    for i = 2, #opts.args do arg[i - 1] = opts.args[i] end
    local ok, e = xpcall(chunk, debug.traceback)
    if not ok then error(e, 0) end
    return 0
end

return M
