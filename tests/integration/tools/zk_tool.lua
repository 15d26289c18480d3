-- A ZooKeeper command line for the live data tests, run by baseplate-script
-- (tests/integration/test-live-data-zookeeper.sh) with the [app:main]
-- section's zookeeper.* keys:
--   get PATH          print the node's data (or the error's class: NoNodeError…)
--   delete PATH       delete the node if it exists
--   version PATH      print the node's version
local live_data = require("baseplate.lib.live_data")

local M = {}

function M.main(app_config, args)
    local log = require("baseplate.log")
    log.set_level("baseplate.lib.live_data.zookeeper", log.WARNING)
    local zk = live_data.zookeeper_client_from_config(nil, app_config)
    zk:start(10)
    local cmd, path = args[1], args[2]
    if cmd == "get" then
        local ok, data = pcall(zk.get, zk, path)
        io.stdout:write(ok and data or tostring(type(data) == "table" and data.class or data))
    elseif cmd == "delete" then
        pcall(zk.delete, zk, path)
    elseif cmd == "version" then
        local _, st = zk:get(path)
        io.stdout:write(tostring(st.version))
    else
        error("unknown command " .. tostring(cmd))
    end
    zk:close()
end

return M
