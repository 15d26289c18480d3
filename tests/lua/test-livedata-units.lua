-- The parts of live data that need no ZooKeeper: the writer's unified diff
-- (the same lines as Python's difflib.unified_diff, compared on random
-- texts), the watcher's [live-data] parsing (the reference's keys and
-- defaults), the atomic file replacement and the heartbeat.
local t = require("testlib")
local ffi = require("ffi")
local writer = require("baseplate.lib.live_data.writer")
local watcher = require("baseplate.sidecars.live_data_watcher")
local core = require("baseplate.core")

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'") == 0)

local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end
local function read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

t.test("unified_diff agrees with Python's difflib", function()
    -- Random texts over a small alphabet of lines (many repeats: the hard
    -- case for matching), of 0 to 30 lines, each pair diffed both ways.
    local seed = 12345
    local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
    end
    local cases = {}
    for _ = 1, 150 do
        local a, b = {}, {}
        for _ = 1, rnd(30) do a[#a + 1] = "line " .. rnd(6) end
        for i = 1, #a do if rnd(4) ~= 0 then b[#b + 1] = a[i] end if rnd(5) == 0 then b[#b + 1] = "new " .. rnd(3) end end
        cases[#cases + 1] = { a, b }
    end
    -- long texts with popular lines (difflib's autojunk)
    for _ = 1, 4 do
        local a, b = {}, {}
        for _ = 1, 250 + rnd(100) do a[#a + 1] = rnd(3) == 0 and ("x" .. rnd(400)) or "}" end
        for i = 1, #a do if rnd(6) ~= 0 then b[#b + 1] = a[i] end if rnd(7) == 0 then b[#b + 1] = "y" .. rnd(9) end end
        cases[#cases + 1] = { a, b }
    end
    cases[#cases + 1] = { {}, { "only" } }
    cases[#cases + 1] = { { "only" }, {} }
    local lines = {}
    for i, c in ipairs(cases) do
        write(tmp .. "/a" .. i, table.concat(c[1], "\n"))
        write(tmp .. "/b" .. i, table.concat(c[2], "\n"))
    end
    write(tmp .. "/diff.py", [[
import difflib, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    a = open("%s/a%d" % (d, i)).read().splitlines()
    b = open("%s/b%d" % (d, i)).read().splitlines()
    print("\n".join(l.rstrip("\n") for l in difflib.unified_diff(a, b, lineterm="")))
    print("=====")
]])
    local p = assert(io.popen("python3 " .. tmp .. "/diff.py " .. tmp .. " " .. #cases))
    local out = p:read("*a")
    p:close()
    local want = {}
    for chunk in out:gmatch("(.-)=====\n") do want[#want + 1] = chunk:gsub("\n$", "") end
    t.eq(#want, #cases, "python answered every case")
    local same = 0
    for i, c in ipairs(cases) do
        local got = table.concat(writer.unified_diff(c[1], c[2]), "\n")
        -- (difflib writes "--- " and "+++ " with a trailing space too)
        if got == want[i] then same = same + 1 else t.eq(got, want[i], "case " .. i) end
    end
    t.eq(same, #cases, "every diff is difflib's")
    lines = writer.unified_diff({ "a" }, { "a" })
    t.eq(#lines, 0, "no difference, no lines")
end)

t.test("lines_of cuts lines as Python's splitlines", function()
    local texts = { "", "a", "a\n", "\n", "a\nb", "a\r\nb\rc\n\nd", "x\vy\fz\28w\29v\30u",
        "\194\133p\226\128\168q\226\128\169r", "\r", "\r\n\r\n", "tail\r" }
    write(tmp .. "/split.py", "import sys, json\nfor t in json.load(open(sys.argv[1])): " ..
        "print(json.dumps(t.encode('latin-1').decode('utf-8').splitlines()))\n")
    local cjson = require("cjson")
    local latin = {}
    for i, s in ipairs(texts) do -- (bytes as code points, so that JSON carries them as they are)
        latin[i] = s:gsub("[\128-\255]", function(ch)
            local b = ch:byte()
            return string.char(0xC0 + math.floor(b / 64), 0x80 + b % 64)
        end)
    end
    write(tmp .. "/texts.json", cjson.encode(latin))
    local p = assert(io.popen("python3 " .. tmp .. "/split.py " .. tmp .. "/texts.json"))
    local i = 0
    for line in p:lines() do
        i = i + 1
        t.eq(writer.lines_of(texts[i]), cjson.decode(line), "text " .. i)
    end
    p:close()
    t.eq(i, #texts, "python answered every text")
end)

t.test("unified_diff of large texts stays bounded", function()
    local a, b = {}, {}
    for i = 1, 3000 do a[i] = "a" .. i; b[i] = "b" .. i end
    local d = writer.unified_diff(a, b)
    t.eq(#d, 3 + 6000, "the headers, one hunk, every line out and in")
end)

t.test("is_utf8", function()
    t.ok(writer.is_utf8("plain {\"json\": 1}\n"), "ASCII")
    t.ok(writer.is_utf8("h\195\169 \226\130\172 \240\159\152\128"), "two, three, four bytes")
    t.ok(not writer.is_utf8("\255\254"), "not UTF-8")
    t.ok(not writer.is_utf8("\192\128"), "overlong")
    t.ok(not writer.is_utf8("\237\160\128"), "a surrogate")
end)

t.test("the watcher's section: keys and defaults of the reference", function()
    local nodes = watcher.parse({
        ["zookeeper.hosts"] = "zk01:2181",
        ["nodes.b.source"] = "/b", ["nodes.b.dest"] = "/tmp/b", ["nodes.b.owner"] = "0",
        ["nodes.b.group"] = "0", ["nodes.b.mode"] = "0640",
        ["nodes.a.source"] = "/a", ["nodes.a.dest"] = "/tmp/a",
    })
    t.eq(#nodes, 2, "two nodes")
    t.eq(nodes[1].name, "a", "sorted by name")
    t.eq(nodes[1].mode, tonumber("400", 8), "mode defaults to 0400")
    t.eq(nodes[1].owner, nil, "no owner by default")
    t.eq(nodes[2].mode, tonumber("640", 8), "mode is octal")
    t.eq(nodes[2].owner, 0, "owner")
    t.eq(nodes[2].group, 0, "group")
    t.raises("nodes.a.dest", watcher.parse, { ["nodes.a.source"] = "/a" })
    t.raises("nodes.a.source: expected a node path", watcher.parse,
        { ["nodes.a.source"] = "a", ["nodes.a.dest"] = "/x" })
    t.raises("nodes.a.mode", watcher.parse, { ["nodes.a.source"] = "/a", ["nodes.a.dest"] = "/x",
        ["nodes.a.mode"] = "0999" })
    t.raises("nodes.a.owner", watcher.parse, { ["nodes.a.source"] = "/a", ["nodes.a.dest"] = "/x",
        ["nodes.a.owner"] = "no-such-user-here" })
end)

t.test("sync: written whole with its mode, removed when the node goes", function()
    local node = { source = "/n", dest = tmp .. "/deep/er/file", mode = tonumber("604", 8) }
    t.eq(watcher.sync(node, "hello"), true, "written")
    t.eq(read(node.dest), "hello", "the content")
    local p = io.popen("stat -c %a '" .. node.dest .. "'")
    t.eq(p:read("*l"), "604", "the mode")
    p:close()
    watcher.sync(node, "")
    t.eq(read(node.dest), "", "empty data, an empty file")
    local ls = io.popen("ls -a '" .. tmp .. "/deep/er'"):read("*a")
    t.ok(not ls:find("tmp", 1, true), "no temporary file left: " .. ls)
    watcher.sync(node, nil)
    t.eq(read(node.dest), nil, "removed")
    watcher.sync(node, nil) -- (already gone: nothing to say)
    local bad = { source = "/n", dest = "/proc/no/such/dir/file", mode = 256 }
    t.eq(watcher.sync(bad, "x"), false, "an unwritable destination is an error, logged")
end)

t.test("bp_live_data_write refuses bad arguments", function()
    local err = ffi.new("char[256]")
    t.eq(core.C.bp_live_data_write("", "x", 1, 256, -1, -1, err, 256), core.EINVAL, "empty path")
    t.eq(core.C.bp_live_data_write(tmp .. "/d/", "x", 1, 256, -1, -1, err, 256), core.EINVAL, "a directory")
    t.eq(core.C.bp_live_data_write(tmp .. "/m", "x", 1, 99999, -1, -1, err, 256), core.EINVAL, "a bad mode")
end)

t.test("heartbeat touches the files while connected", function()
    local node = { source = "/n", dest = tmp .. "/beat", mode = tonumber("600", 8) }
    watcher.sync(node, "x")
    assert(os.execute("touch -d '2001-01-01' '" .. node.dest .. "'") == 0)
    local function mtime()
        local p = io.popen("stat -c %Y '" .. node.dest .. "'")
        local v = tonumber(p:read("*l"))
        p:close()
        return v
    end
    watcher.heartbeat({ is_connected = function() return false end }, { node })
    t.ok(mtime() < 1000000000, "not touched while disconnected")
    watcher.heartbeat({ is_connected = function() return true end }, { node })
    t.ok(mtime() > os.time() - 60, "touched while connected")
end)

os.execute("rm -rf '" .. tmp .. "'")
t.done()
