-- baseplate.lib.live_data's ZooKeeper client against the real ZooKeeper of
-- tests/zookeeper.sh: the calls and their errors (Kazoo's classes),
-- versions, data_watch through create/change/delete, the events, many
-- calls at once, a node of nearly a megabyte, closing with calls in
-- flight, and what the configuration refuses.
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local clients = require("baseplate.clients.base")
local live_data = require("baseplate.lib.live_data")
local zookeeper = live_data.zookeeper

local HOSTS = assert(os.getenv("BP_TEST_ZOOKEEPER_HOSTS"), "BP_TEST_ZOOKEEPER_HOSTS is set by ctest")
local ROOT = "/bp-lua-" .. tostring(math.floor(runtime.time() * 1000) % 1000000000)

local function class_of(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then return "no error" end
    if clients.is_error(err) then return err.class end
    return tostring(err)
end

local zk = live_data.zookeeper_client_from_config(nil, { ["zookeeper.hosts"] = HOSTS,
    ["zookeeper.timeout"] = "3 seconds" })

t.test("connects", function()
    zk:start(10)
    t.ok(zk:is_connected(), "connected")
    t.ok(zk:session_id() ~= 0, "a session")
end)

t.test("create, get, exists, set, delete and their errors", function()
    t.eq(zk:create(ROOT, "root"), ROOT, "create returns the path")
    local data, st = zk:get(ROOT)
    t.eq(data, "root", "get")
    t.eq(st.version, 0, "version 0")
    t.eq(st.data_length, 4, "data_length")
    t.ok(st.mtime > 1.6e12, "mtime in milliseconds")
    t.eq(zk:exists(ROOT).version, 0, "exists")
    t.eq(zk:exists(ROOT .. "/none"), nil, "exists: nil without a node")
    t.eq(class_of(zk.get, zk, ROOT .. "/none"), "NoNodeError", "get of a missing node")
    t.eq(class_of(zk.create, zk, ROOT, "again"), "NodeExistsError", "create of an existing node")
    t.eq(class_of(zk.create, zk, ROOT .. "/a/b", "x"), "NoNodeError", "create without the parent")
    t.eq(zk:set(ROOT, "v1", 0).version, 1, "set with the right version")
    t.eq(class_of(zk.set, zk, ROOT, "v2", 0), "BadVersionError", "set with a stale version")
    t.eq(zk:get(ROOT), "v1", "unchanged by the refused set")
    t.eq(zk:set(ROOT, "").version, 2, "set with any version; empty data")
    t.eq(zk:get(ROOT), "", "empty data")
    zk:create(ROOT .. "/gone", "x")
    zk:delete(ROOT .. "/gone")
    t.eq(zk:exists(ROOT .. "/gone"), nil, "deleted")
    t.eq(class_of(zk.delete, zk, ROOT .. "/gone"), "NoNodeError", "delete of a missing node")
    local ok, err = pcall(zk.get, zk, ROOT .. "/none")
    t.eq(err.code, zookeeper.ZNONODE, "err.code is ZooKeeper's")
    t.eq(err.client, "zookeeper", "err.client")
    t.ok(not ok and err.message:find("no node", 1, true), "the message says it: " .. tostring(err.message))
end)

t.test("paths are checked", function()
    for _, p in ipairs({ "", "relative", ROOT .. "/", ROOT .. "//x" }) do
        local ok, err = pcall(zk.get, zk, p)
        t.ok(not ok and tostring(err):find("invalid node path", 1, true), "refused: " .. p .. " " .. tostring(err))
    end
end)

t.test("data_watch: now, then each change; nil while there is no node", function()
    local seen = {}
    local path = ROOT .. "/watched"
    zk:data_watch(path, function(data, st)
        seen[#seen + 1] = data == nil and "(none)" or (data .. "@" .. st.version)
    end)
    t.wait_until(function() return #seen >= 1 end, 5)
    zk:create(path, "one")
    t.wait_until(function() return #seen >= 2 end, 5)
    zk:set(path, "two")
    t.wait_until(function() return #seen >= 3 end, 5)
    zk:delete(path)
    t.wait_until(function() return #seen >= 4 end, 5)
    zk:create(path, "three")
    t.wait_until(function() return #seen >= 5 end, 5)
    t.eq(seen, { "(none)", "one@0", "two@1", "(none)", "three@0" }, "every state, in order")
end)

t.test("events reach listeners", function()
    local got = {}
    zk:add_listener(function(ev, path) got[#got + 1] = { ev, path } end)
    local path = ROOT .. "/ev"
    t.eq(zk:exists(path, true), nil, "watch a node that does not exist")
    zk:create(path, "x")
    t.wait_until(function() return #got >= 1 end, 5)
    t.eq(got[1], { zookeeper.CREATED, path }, "CREATED with the path")
end)

t.test("many calls at once, on one session", function()
    local n, done, bad = 200, 0, 0
    zk:create(ROOT .. "/many", "m")
    for i = 1, n do
        baseplate.spawn(function()
            local ok, data = pcall(zk.get, zk, ROOT .. "/many")
            if not ok or data ~= "m" then bad = bad + 1 end
            if i % 2 == 0 then pcall(zk.exists, zk, ROOT .. "/nothing-" .. i) end
            done = done + 1
        end)
    end
    t.wait_until(function() return done == n end, 10)
    t.eq(bad, 0, "every call answered right")
end)

t.test("a node of nearly a megabyte", function()
    local big = string.rep("0123456789abcdef", 60000) -- 960,000 bytes
    zk:create(ROOT .. "/big", big)
    local data = zk:get(ROOT .. "/big")
    t.eq(#data, #big, "the size")
    t.ok(data == big, "the bytes")
end)

t.test("the configuration refuses bad values", function()
    local function msg(raw)
        local ok, err = pcall(live_data.zookeeper_client_from_config, nil, raw)
        return ok and "accepted" or tostring(err.message or err)
    end
    t.ok(msg({}):find("zookeeper.hosts", 1, true), "hosts required")
    t.ok(msg({ ["zookeeper.hosts"] = "nohost" }):find("without :port", 1, true), "a host without a port")
    t.ok(msg({ ["zookeeper.hosts"] = "a:99999" }):find("1-65535", 1, true), "a port out of range")
    t.ok(msg({ ["zookeeper.hosts"] = "a:1", ["zookeeper.timeout"] = "0 seconds" }):find("above 0", 1, true),
        "a zero timeout")
    t.ok(msg({ ["zookeeper.hosts"] = "a:1", ["zookeeper.credentials"] = "secret/x" }):find("no secrets store", 1, true),
        "credentials need a store")
end)

t.test("names are looked up off the loop, every address tried", function()
    local port = HOSTS:match(":(%d+)$")
    local named = zookeeper.new(" localhost:" .. port .. " ,[::1]:" .. port, { timeout = 3 })
    t.eq(named.hosts, " localhost:" .. port .. " ,[::1]:" .. port, "the hosts as given")
    named:start(10)
    t.ok(named:is_connected(), "connected through a name (ZooKeeper listens on 127.0.0.1 only)")
    t.eq(named:get(ROOT), "", "and it works")
    named:close()
    local nowhere = zookeeper.new("no-such-host.invalid:" .. port, { timeout = 1 })
    local ticks, stop = 0, false
    baseplate.spawn(function() while not stop do ticks = ticks + 1 runtime.sleep(0.01) end end)
    t.eq(class_of(nowhere.start, nowhere, 0.5), "ConnectionError", "an unknown name never connects")
    stop = true
    t.ok(ticks >= 20, "the loop ran meanwhile (" .. ticks .. " ticks of 10 ms in 0.5 s)")
    nowhere:close()
end)

t.test("start gives up on an unreachable server, the client keeps trying", function()
    local lonely = zookeeper.new("127.0.0.1:1", { timeout = 1 })
    local t0 = runtime.now()
    t.eq(class_of(lonely.start, lonely, 0.3), "ConnectionError", "not connected in time")
    t.ok(runtime.now() - t0 < 2, "after the time given")
    t.eq(class_of(lonely.get, lonely, "/x"), "ConnectionError", "calls fail while disconnected")
    lonely:close()
end)

t.test("close: calls in flight and later fail with ConnectionError", function()
    local other = zookeeper.new(HOSTS, { timeout = 3 })
    other:start(10)
    local results = {}
    for i = 1, 20 do
        baseplate.spawn(function() results[i] = class_of(other.get, other, ROOT) end)
    end
    other:close()
    t.wait_until(function() return #results == 20 end, 5)
    local n = 0
    for i = 1, 20 do if results[i] == "ConnectionError" or results[i] == "no error" then n = n + 1 end end
    t.eq(n, 20, "each call answered or failed as a ConnectionError")
    t.eq(class_of(other.get, other, ROOT), "ConnectionError", "after close")
    other:close() -- (twice is fine)
end)

t.test("clean up", function()
    for _, c in ipairs({ "/big", "/many", "/ev", "/watched" }) do pcall(zk.delete, zk, ROOT .. c) end
    zk:delete(ROOT)
    zk:close()
end)

t.done()
