-- A server with no listening socket (as a queue consumer will be): it does
-- its work on a timer, with an application that is no HTTP app.
local baseplate = require("baseplate")
local log = require("baseplate.log")

local M = {}

M.uses_listener = false

function M.make_app(app_config)
    return { name = app_config.name or "ticker" }
end

function M.make_server(server_config, listener, app, opts)
    assert(listener == nil, "a server without a listener gets none")
    local logger = log.get_logger("ticker")
    local server = { settings = { stop_timeout = 5 } }
    local stopping, stopped = false, false
    baseplate.spawn(function()
        local n = 0
        while not stopping do
            n = n + 1
            logger:info("%s tick %d", app.name, n)
            baseplate.sleep(tonumber(server_config.interval) or 0.1)
        end
        logger:info("%s stopped after %d ticks", app.name, n)
        stopped = true
    end)
    -- the graceful shutdown: finish the work in hand, up to `timeout`
    function server.shutdown(_, timeout)
        stopping = true
        local waited = 0
        while not stopped and waited < timeout do
            baseplate.sleep(0.01)
            waited = waited + 0.01
        end
        return stopped
    end
    return server
end

return M
