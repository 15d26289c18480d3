-- The memcache serializers against Baseplate.py's flags, with Debian's
-- python3-pymemcache as the other side (tests/integration/tools/
-- memcache_peer.py): what Python stores reads back here as the same Lua
-- value, and what this client stores reads back in Python as the same
-- Python value. Against the memcached of tests/services.sh.
local t = require("testlib")
local memcache = require("baseplate.clients.memcache")
local lib = require("baseplate.clients.memcache.lib")
local cjson = require("cjson")

local ENDPOINT = assert(os.getenv("BP_TEST_MEMCACHED_ENDPOINT"), "BP_TEST_MEMCACHED_ENDPOINT is set by ctest")
local SOURCE_DIR = assert(os.getenv("BASEPLATE_SOURCE_DIR"), "BASEPLATE_SOURCE_DIR is set by ctest")
local PEER = "/usr/bin/python3 " .. SOURCE_DIR .. "/tests/integration/tools/memcache_peer.py"

local function peer(args)
    local p = assert(io.popen(PEER .. " " .. args .. " 2>&1; echo \"exit $?\""))
    local out = p:read("*a")
    p:close()
    local body, code = out:match("^(.-)exit (%d+)\n$")
    if code ~= "0" then error("memcache_peer.py " .. args .. " failed: " .. out, 2) end
    return body
end

local c = memcache.monitored("mc", nil, memcache.pool_from_config({ ["mc.endpoint"] = ENDPOINT }, "mc.",
    lib.make_dump_and_compress_fn(100), lib.decompress_and_load))

t.test("what Python stores reads back as the same Lua value", function()
    peer("write " .. ENDPOINT)
    t.eq(c:get("py:str"), "hello, world")
    t.eq(c:get("py:bytes"), "a\0b\255")
    t.eq(c:get("py:int"), 42)
    t.eq(c:get("py:neg"), -7)
    t.eq(tostring(c:get("py:big")), "4611686018427387904LL")
    t.eq(c:get("py:bool"), 1, "Python's True is an int: INTEGER 1")
    t.eq(c:get("py:float"), 3.5)
    t.eq(c:get("py:list"), { 1, "two", cjson.null, false })
    t.eq(c:get("py:dict"), { a = { b = { 1, 2 } }, c = "d" })
    t.eq(c:get("py:long"), { text = string.rep("compress me ", 50) }, "zlib-compressed by Python")
    local err = t.raises("Python pickle", c.get, c, "py:pickle")
    t.eq(err.class, "MemcacheError")
end)

t.test("what this client stores reads back in Python as the same value", function()
    local values = {
        { "lua:str", "hello", "b'hello'" },
        { "lua:bin", "a\0b\255", "b'a\\x00b\\xff'" },
        { "lua:int", 42, "42" },
        { "lua:neg", -123456789012, "-123456789012" },
        { "lua:i64", 4611686018427387904LL, "4611686018427387904" },
        { "lua:float", 0.1, "0.1" },
        { "lua:true", true, "True" },
        { "lua:list", { 1, "two", false }, "[1, 'two', False]" },
        { "lua:dict", { a = { b = "c" } }, "{'a': {'b': 'c'}}" },
        { "lua:long", { text = string.rep("compress me ", 50) }, "{'text': '" .. string.rep("compress me ", 50) .. "'}" },
    }
    local keys = {}
    for i, v in ipairs(values) do
        t.eq(c:set(v[1], v[2]), true)
        keys[i] = v[1]
    end
    local lines = {}
    for line in peer("read " .. ENDPOINT .. " " .. table.concat(keys, " ")):gmatch("[^\n]+") do
        lines[#lines + 1] = line
    end
    for i, v in ipairs(values) do t.eq(lines[i], v[3], v[1]) end
end)

t.done()
