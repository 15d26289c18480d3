-- baseplate-live-data-writer: write a file's contents to a node in
-- ZooKeeper, as Baseplate.py's baseplate.lib.live_data.writer
-- (docs/live-data.md): the [live-data] section of the configuration file
-- says how to reach ZooKeeper (as the watcher's), the node must exist
-- (--create makes it), the difference with the node's data is shown as a
-- unified diff, and the data is written only if the node did not change
-- meanwhile (its version). --dry-run stops after the diff; on a terminal
-- the writer asks before writing (--yes does not ask).
local runtime = require("baseplate.runtime")
local zookeeper = require("baseplate.lib.live_data.zookeeper")
local clients = require("baseplate.clients.base")
local diff = require("baseplate.lib.live_data.diff")

local format, concat = string.format, table.concat

local M = {}

local lines_of, unified_diff, is_utf8 = diff.lines_of, diff.unified_diff, diff.is_utf8
M.unified_diff, M.is_utf8, M.lines_of = unified_diff, is_utf8, lines_of

local function say(...) io.stdout:write(format(...), "\n") io.stdout:flush() end
local function complain(...) io.stderr:write(format(...), "\n") io.stderr:flush() end

local function read_source(path)
    local f, err
    if path == "-" then f = io.stdin else f, err = io.open(path, "rb") end
    if not f then return nil, err end
    local data = f:read("*a")
    if f ~= io.stdin then f:close() end
    if not data then return nil, path .. ": cannot read" end
    return data
end

local function connect(raw, secrets)
    local client = zookeeper.zookeeper_client_from_config(secrets, raw, false)
    client:start()
    return client
end

local function interactive()
    local ok = os.execute("test -t 0 && test -t 1")
    return ok == 0 or ok == true
end

--- Write `data` to node `dest`. opts: dry_run, yes, create, ask (a
--- function(question) -> true to go on; nil: do not ask), acl ("creator"
--- when there are credentials). Returns an exit status.
function M.write(client_of, dest, data, opts)
    local client = client_of()
    local ok, current, stat = pcall(client.get, client, dest)
    if not ok then
        if clients.is_error(current) and current.class == "NoNodeError" then
            if not opts.create then
                complain("Target node does not exist. Please create it with appropriate ACLs first.")
                return 1
            end
            if opts.dry_run then
                say("Dry run: %s does not exist; it would be created with %d bytes.", dest, #data)
                return 0
            end
            if opts.ask and not opts.ask(format("Create %s with %d bytes?", dest, #data)) then
                say("Not writing.")
                return 1
            end
            client = client_of()
            client:create(dest, data, { acl = opts.acl })
            say("Created %s in ZooKeeper.", dest)
            return 0
        end
        error(current, 0)
    end
    if current == data then
        say("No changes detected. Not writing.")
        return 0
    end
    if is_utf8(current) and is_utf8(data) then
        say("%s", concat(unified_diff(lines_of(current), lines_of(data)), "\n"))
    else
        say("Skipping diff, data appears to be binary.")
    end
    if opts.dry_run then
        say("Dry run: not writing.")
        return 0
    end
    if opts.ask and not opts.ask(format("Write this to %s?", dest)) then
        say("Not writing.")
        return 1
    end
    client = client_of()
    local sok, err = pcall(client.set, client, dest, data, stat.version)
    if not sok then
        if clients.is_error(err) and err.class == "BadVersionError" then
            complain("The data in ZooKeeper changed unexpectedly.")
            return 1
        end
        error(err, 0)
    end
    say("Wrote data to Zookeeper.")
    return 0
end

--- baseplate-live-data-writer's main. opts: config_file, source, dest,
--- debug, dry_run, yes, create.
function M.main(opts)
    local ini = require("baseplate.ini")
    local server = require("baseplate.server")
    local C = require("baseplate.core").C
    local ok, file = pcall(ini.load, opts.config_file)
    if not ok then runtime.fatal(runtime.message_of(file)) end
    server.configure_logging(file, opts.debug)
    if not opts.debug then -- (the client's connection news is noise here, as the reference quiets Kazoo)
        local log = require("baseplate.log")
        log.set_level("baseplate.lib.live_data.zookeeper", log.WARNING)
    end
    local raw = file:section("live-data")
    if not raw then runtime.fatal(format("%s: no [live-data] section", file.path)) end
    local data, rerr = read_source(opts.source)
    if not data then runtime.fatal(rerr) end

    local secrets
    if (raw["zookeeper.credentials"] or "") ~= "" then
        local sok, store = pcall(require("baseplate.lib.secrets").secrets_store_from_config, raw)
        if not sok then runtime.fatal(runtime.message_of(store)) end
        secrets = store
    end
    -- A terminal's answer may take longer than a session lives: the
    -- session is closed while asking, and a new one writes (the version
    -- check still sees any change made meanwhile).
    local client
    local function client_of()
        if not client then client = connect(raw, secrets) end
        return client
    end
    local ask
    if not opts.yes and not opts.dry_run and opts.source ~= "-" and interactive() then
        ask = function(question)
            if client then client:close() client = nil end
            io.stdout:write(question, " [y/N] ")
            io.stdout:flush()
            local answer = io.stdin:read("*l") or ""
            return answer:lower():match("^%s*y") ~= nil
        end
    end
    say("Writing %s to ZooKeeper %s...", opts.source, opts.dest)
    local wok, code = pcall(M.write, client_of, opts.dest, data, {
        dry_run = opts.dry_run, create = opts.create, ask = ask,
        acl = secrets and "creator" or "open",
    })
    if client then client:close() end
    if not wok then
        complain("baseplate-live-data-writer: %s", runtime.message_of(code))
        code = 1
    end
    io.stdout:flush()
    C.bp_loop_stop()
    return code
end

return M
