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

local format, concat = string.format, table.concat

local M = {}

M.CONTEXT = 3              -- lines of context around a change
M.MAX_DIFF_CELLS = 1000000 -- beyond (lines × lines of the changed middle), the diff is not minimal

local function lines_of(text)
    local out = {}
    for line in (text .. "\n"):gmatch("(.-)\r?\n") do out[#out + 1] = line end
    if text:sub(-1) == "\n" or text == "" then out[#out] = nil end
    return out
end
M.lines_of = lines_of

--- Whether `s` is UTF-8 text (else the diff is skipped, as the reference).
function M.is_utf8(s)
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local len
        if c < 0x80 then len = 1
        elseif c >= 0xC2 and c <= 0xDF then len = 2
        elseif c >= 0xE0 and c <= 0xEF then len = 3
        elseif c >= 0xF0 and c <= 0xF4 then len = 4
        else return false end
        for k = 1, len - 1 do
            local cc = s:byte(i + k)
            if not cc or cc < 0x80 or cc > 0xBF then return false end
        end
        if len == 3 then
            local c2 = s:byte(i + 1)
            if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then return false end
        elseif len == 4 then
            local c2 = s:byte(i + 1)
            if (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then return false end
        end
        i = i + len
    end
    return true
end

-- The edit script from lines a to lines b: a list of { tag, line } with
-- tag "=", "-" or "+" (a longest common subsequence of the middle that
-- the common head and tail leave, when it is small enough).
local function edits(a, b)
    local out = {}
    local na, nb = #a, #b
    local head = 0
    while head < na and head < nb and a[head + 1] == b[head + 1] do head = head + 1 end
    local tail = 0
    while tail < na - head and tail < nb - head and a[na - tail] == b[nb - tail] do tail = tail + 1 end
    for i = 1, head do out[#out + 1] = { "=", a[i] } end
    local m, n = na - head - tail, nb - head - tail
    if m * n > 0 and m * n <= M.MAX_DIFF_CELLS then
        -- lcs[i][j]: the LCS length of a[i..] and b[j..] (of the middle)
        local lcs = {}
        for i = m + 1, 1, -1 do
            local row, below = {}, lcs[i + 1]
            for j = n + 1, 1, -1 do
                if i > m or j > n then
                    row[j] = 0
                elseif a[head + i] == b[head + j] then
                    row[j] = below[j + 1] + 1
                else
                    local x, y = below[j], row[j + 1]
                    row[j] = x >= y and x or y
                end
            end
            lcs[i] = row
        end
        local i, j = 1, 1
        while i <= m and j <= n do
            if a[head + i] == b[head + j] then
                out[#out + 1] = { "=", a[head + i] }
                i, j = i + 1, j + 1
            elseif lcs[i + 1][j] >= lcs[i][j + 1] then
                out[#out + 1] = { "-", a[head + i] }
                i = i + 1
            else
                out[#out + 1] = { "+", b[head + j] }
                j = j + 1
            end
        end
        for k = i, m do out[#out + 1] = { "-", a[head + k] } end
        for k = j, n do out[#out + 1] = { "+", b[head + k] } end
    else
        for k = 1, m do out[#out + 1] = { "-", a[head + k] } end
        for k = 1, n do out[#out + 1] = { "+", b[head + k] } end
    end
    for k = na - tail + 1, na do out[#out + 1] = { "=", a[k] } end
    return out
end

-- difflib's range: "start,length", "start" for one line, "start-1,0" for none.
local function range(start, length)
    if length == 1 then return tostring(start) end
    if length == 0 then start = start - 1 end
    return start .. "," .. length
end

--- The unified diff of texts `old` and `new` (lists of lines, without
--- newlines), as Python's difflib.unified_diff with its defaults; {} when
--- they are the same.
function M.unified_diff(old, new)
    local ed = edits(old, new)
    local n = M.CONTEXT
    local changes = {}
    for k, e in ipairs(ed) do
        if e[1] ~= "=" then changes[#changes + 1] = k end
    end
    if #changes == 0 then return {} end
    local out = { "--- ", "+++ " }
    -- a line index of each edit in a and in b (1-based, before the edit)
    local ai, bi = {}, {}
    local x, y = 1, 1
    for k, e in ipairs(ed) do
        ai[k], bi[k] = x, y
        if e[1] ~= "+" then x = x + 1 end
        if e[1] ~= "-" then y = y + 1 end
    end
    ai[#ed + 1], bi[#ed + 1] = x, y
    local c = 1
    while c <= #changes do
        local first, last = changes[c], changes[c]
        while c < #changes and changes[c + 1] - last - 1 <= 2 * n do
            c = c + 1
            last = changes[c]
        end
        c = c + 1
        local from = math.max(1, first - n)
        local to = math.min(#ed, last + n)
        local alen, blen = 0, 0
        for k = from, to do
            if ed[k][1] ~= "+" then alen = alen + 1 end
            if ed[k][1] ~= "-" then blen = blen + 1 end
        end
        out[#out + 1] = format("@@ -%s +%s @@", range(ai[from], alen), range(bi[from], blen))
        for k = from, to do
            local tag = ed[k][1] == "=" and " " or ed[k][1]
            out[#out + 1] = tag .. ed[k][2]
        end
    end
    return out
end

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
    if M.is_utf8(current) and M.is_utf8(data) then
        say("%s", concat(M.unified_diff(lines_of(current), lines_of(data)), "\n"))
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
