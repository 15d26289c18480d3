-- The app of tests/integration/test-live-data-zookeeper.sh: a file that
-- baseplate-live-data-watcher keeps in step with a ZooKeeper node
-- (live_data.path), read through baseplate.lib.file_watcher on every
-- request, as a service uses live data.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local file_watcher = require("baseplate.lib.file_watcher")

local M = {}

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    local watcher = file_watcher.FileWatcher(app_config["live_data.path"],
        function(f) return f:read("*a") end, { timeout = 0 })
    local app = http.app(app_config, { baseplate = bp })

    app:get("data", "/data", function()
        local ok, data = pcall(watcher.get_data, watcher)
        return { data = ok and data or "(not available)" }
    end)

    return app
end

return M
