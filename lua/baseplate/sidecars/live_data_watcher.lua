-- baseplate-live-data-watcher: the sidecar that keeps local files in step
-- with ZooKeeper nodes, as Baseplate.py's baseplate.sidecars.live_data_watcher
-- (docs/live-data.md).
--
-- Every node of the [live-data] section is watched (the ZooKeeper client's
-- data_watch): its data replaces the file at once (bp_live_data_write: a
-- new file in the same directory, flushed, with its mode and owner, renamed
-- over the old one), and a node that does not exist (or no longer does)
-- removes the file, which comes back when the node is created. After a
-- lost connection or an expired session every node is read again. Every
-- five minutes, while connected, each file's modification time is touched
-- to show monitoring that the sidecar is alive.
--
-- The work runs in coroutines on the loop (src/cli/live_data_watcher.c
-- parses the command line).
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local zookeeper = require("baseplate.lib.live_data.zookeeper")
local log = require("baseplate.log")

ffi.cdef([[
int bp_live_data_write(const char *path, const void *data, size_t len, int mode, long uid, long gid,
                       char *err, size_t errlen);
int bp_live_data_touch(const char *path);
int bp_live_data_remove(const char *path);
]])

local C = core.C
local format = string.format

local M = {}

M.HEARTBEAT_INTERVAL = 300 -- seconds between the touches of the files
M.SECTION = "live-data"

local logger = log.get_logger("baseplate.sidecars.live_data_watcher")
local errbuf = ffi.new("char[512]")

M.SPEC = {
    nodes = config.DictOf({
        source = config.String,
        dest = config.String,
        owner = config.Optional(config.UnixUser),
        group = config.Optional(config.UnixGroup),
        mode = config.Optional(config.Integer({ base = 8 }), tonumber("400", 8)),
    }),
}

--- Parse the section (`raw`): the nodes, sorted by name. Errors name the
--- key.
function M.parse(raw)
    local cfg = config.parse_config(raw, M.SPEC)
    local nodes = {}
    for name, node in pairs(cfg.nodes) do
        if node.source:sub(1, 1) ~= "/" then
            error(format("nodes.%s.source: expected a node path (/a/b), got %s", name, config.quote(node.source)), 0)
        end
        if node.mode < 0 or node.mode > tonumber("7777", 8) then
            error(format("nodes.%s.mode: expected an octal mode such as 0400", name), 0)
        end
        node.name = name
        nodes[#nodes + 1] = node
    end
    table.sort(nodes, function(a, b) return a.name < b.name end)
    return nodes
end

--- What a node's data does to its file: written (data, a string) or
--- removed (data nil). Errors are logged; the next change tries again.
function M.sync(node, data)
    if data == nil then
        local rc = C.bp_live_data_remove(node.dest)
        if rc == core.OK then
            logger:info("removed %s: %s does not exist", node.dest, node.source)
        elseif rc ~= core.ENOENT then
            logger:warning("%s: could not remove: %s", node.dest, core.strerror(rc))
        end
        return
    end
    local rc = C.bp_live_data_write(node.dest, data, #data, node.mode, node.owner or -1, node.group or -1,
        errbuf, ffi.sizeof(errbuf))
    if rc ~= core.OK then
        logger:error("could not update %s: %s", node.dest, ffi.string(errbuf))
        return false
    end
    logger:info("updated %s (%d bytes from %s)", node.dest, #data, node.source)
    return true
end

--- Touch every file (while connected).
function M.heartbeat(client, nodes)
    if not client:is_connected() then return end
    for _, node in ipairs(nodes) do
        logger:debug("heartbeating %s", node.dest)
        local rc = C.bp_live_data_touch(node.dest)
        if rc ~= core.OK and rc ~= core.ENOENT then
            logger:warning("%s: could not heartbeat: %s", node.dest, core.strerror(rc))
        end
    end
end

--- Watch the nodes with `client` (started or not).
function M.watch(client, nodes)
    for _, node in ipairs(nodes) do
        client:data_watch(node.source, function(data) M.sync(node, data) end)
    end
end

--- baseplate-live-data-watcher's main. opts: config_file, debug.
function M.main(opts)
    local ini = require("baseplate.ini")
    local server = require("baseplate.server")
    local ok, file = pcall(ini.load, opts.config_file)
    if not ok then runtime.fatal(runtime.message_of(file)) end
    server.configure_logging(file, opts.debug)
    local raw = file:section(M.SECTION)
    if not raw then runtime.fatal(format("%s: no [%s] section", file.path, M.SECTION)) end
    local where = format("%s: [%s]", file.path, M.SECTION)
    local pok, nodes = pcall(M.parse, raw)
    if not pok then runtime.fatal(where .. " " .. runtime.message_of(nodes)) end
    if #nodes == 0 then runtime.fatal(where .. " no nodes.NAME.source/dest to watch") end

    -- The secrets store only when credentials are asked for (waiting up
    -- to 30 seconds for its file, as the reference).
    local secrets
    if (raw["zookeeper.credentials"] or "") ~= "" then
        local sok, store = pcall(require("baseplate.lib.secrets").secrets_store_from_config, raw, 30)
        if not sok then runtime.fatal(where .. " " .. runtime.message_of(store)) end
        secrets = store
    end
    local cok, client = pcall(zookeeper.zookeeper_client_from_config, secrets, raw, true)
    if not cok then runtime.fatal(where .. " " .. runtime.message_of(client)) end

    local stopping = false
    runtime.add_signal_handler(function(name)
        if name == "SIGINT" or name == "SIGTERM" then
            if not stopping then logger:info("%s: stopping", name) end
            stopping = true
        end
    end)
    logger:info("watching %d nodes in %s", #nodes, client.hosts)
    M.watch(client, nodes)
    local next_beat = runtime.now() + M.HEARTBEAT_INTERVAL
    while not stopping do
        runtime.sleep(0.2)
        if runtime.now() >= next_beat then
            next_beat = runtime.now() + M.HEARTBEAT_INTERVAL
            M.heartbeat(client, nodes)
        end
    end
    client:close()
    io.stdout:flush()
    C.bp_loop_stop()
    return 0
end

return M
