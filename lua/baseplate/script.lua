-- baseplate-script: run module:function(app_config, args) with the
-- application's configuration loaded, after Baseplate.py's baseplate-script
-- (an abbreviated start-up sequence: the config file, logging, [app:NAME]
-- with [DEFAULT] merged in; no server, no socket).
--
-- The function runs in a coroutine on the event loop, so clients that wait
-- (Redis, Postgres, sleep) work in it, and Baseplate:server_context(name, fn)
-- gives it a server span like a request's. When it returns, the process ends
-- (whatever else is still scheduled is stopped).
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local ini = require("baseplate.ini")
local server = require("baseplate.server")

local C = core.C
local fatal = runtime.fatal

local M = {}

--- The traceback of an error for an xpcall handler to call (`level` 2 skips
--- the handler), without the frames of the machinery that called the
--- user's code (everything from the xpcall outwards, or from a line
--- containing `stop_at`).
function M.traceback(msg, level, stop_at)
    local tb = debug.traceback(msg, (level or 1) + 1)
    local out = {}
    for line in (tb .. "\n"):gmatch("(.-)\n") do
        if line:find("in function 'xpcall'", 1, true)
            or (stop_at and line:find(stop_at, 1, true)) then
            break
        end
        out[#out + 1] = line
    end
    return table.concat(out, "\n")
end

--- Find the Lua function `spec` ("module:function") names; a start-up
--- error (one line) when it cannot.
function M.load_function(spec, what)
    if not spec:find(":", 1, true) then
        fatal(string.format("%s: expected 'module:function', got %s", what,
            require("baseplate.lib.config").quote(spec)), 2)
    end
    local ok, f = pcall(server.load_factory, spec, nil)
    if not ok then fatal(what .. ": " .. runtime.message_of(f)) end
    if f.kind ~= "lua" then
        fatal(string.format("%s: '%s' is a C extension module; expected a Lua function", what, spec))
    end
    return f.fn
end

--- Read the config file `path` (a start-up error, one line, when it
--- cannot be read or parsed).
function M.read_config(path)
    local ok, file = pcall(ini.load, path)
    if not ok then fatal(runtime.message_of(file)) end
    server.state.file = file
    return file
end

--- Configure logging like baseplate-serve, and return the [app:NAME]
--- section (with [DEFAULT] merged in).
function M.app_config(file, app_name, debug)
    server.configure_logging(file, debug)
    local section = "app:" .. (app_name or "main")
    local app_config = file:section(section)
    if not app_config then
        fatal(string.format("%s: no section [%s]", file.path, section))
    end
    return app_config
end

local function exit_status(res)
    if type(res) == "number" and res == math.floor(res) and res >= 0 and res <= 255 then
        return res
    end
    return 0
end

--- baseplate-script's main (run by the core in a coroutine).
--- opts: config_file, app_name, entrypoint, debug, args (the rest of the
--- command line).
function M.main(opts)
    local file = M.read_config(opts.config_file)
    local fn = M.load_function(opts.entrypoint, "entrypoint")
    local app_config = M.app_config(file, opts.app_name, opts.debug)
    local args = {}
    for i, a in ipairs(opts.args or {}) do args[i] = a end

    local tb
    local res = { xpcall(fn, function(err)
        tb = M.traceback(runtime.message_of(err), 2)
        return err
    end, app_config, args) }
    -- The Sentry observer reports the error and sends what it queued.
    local sentry = package.loaded["baseplate.observers.sentry"]
    if sentry then sentry.script_finished(res[1], res[2], tb) end
    -- The script is over: stop whatever it left scheduled (pools, timers).
    C.bp_loop_stop()
    if not res[1] then
        io.stdout:flush()
        io.stderr:write("baseplate-script: error: ", tb, "\n")
        io.stderr:flush()
        return 1
    end
    io.stdout:flush()
    return exit_status(res[2])
end

return M
