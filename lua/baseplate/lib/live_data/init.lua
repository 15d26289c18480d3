-- baseplate.lib.live_data: data kept in ZooKeeper and synchronised to
-- files by the watcher sidecar (docs/live-data.md). Services read the
-- files with baseplate.lib.file_watcher; this module is the ZooKeeper
-- client, for what the sidecar and the writer tool do not cover.
local zookeeper = require("baseplate.lib.live_data.zookeeper")

return {
    zookeeper_client_from_config = zookeeper.zookeeper_client_from_config,
    zookeeper = zookeeper,
}
