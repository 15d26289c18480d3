-- The memcache client against the real memcached of tests/services.sh:
-- every command, multi-key calls, CAS conflicts, expiry, big values, keys
-- refused, Baseplate.py's serializer flags, spans, and connections that
-- break (a server killed mid-call, timeouts, a hostile stand-in).
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local clients = require("baseplate.clients.base")
local memcache = require("baseplate.clients.memcache")
local lib = require("baseplate.clients.memcache.lib")
local cjson = require("cjson")

local ENDPOINT = assert(os.getenv("BP_TEST_MEMCACHED_ENDPOINT"), "BP_TEST_MEMCACHED_ENDPOINT is set by ctest")
local PORT = tonumber(ENDPOINT:match(":(%d+)$"))

local function client(extra, serializer, deserializer, endpoint)
    local raw = { ["mc.endpoint"] = endpoint or ENDPOINT }
    for k, v in pairs(extra or {}) do raw["mc." .. k] = v end
    local pool = memcache.pool_from_config(raw, "mc.", serializer, deserializer)
    return memcache.monitored("mc", nil, pool), pool
end

local json_client = function(extra, endpoint)
    return client(extra, lib.make_dump_and_compress_fn(100), lib.decompress_and_load, endpoint)
end

-- A stand-in server: nc listening on `port`, answering `answer` (printf
-- format) to whatever comes, or nothing. Returns a function that stops it.
local function stand_in(port, answer)
    local pid_file = os.tmpname()
    local cmd = answer and ("printf '" .. answer .. "' | nc -N -l 127.0.0.1 " .. port)
        or ("sleep 30 | nc -k -l 127.0.0.1 " .. port)
    assert(os.execute("(" .. cmd .. " >/dev/null 2>&1 & echo $! >" .. pid_file .. ")") == 0)
    local listening = string.format(":%04X 00000000:0000 0A", port)
    t.ok(t.wait_until(function()
        local f = io.open("/proc/net/tcp")
        local all = f:read("*a")
        f:close()
        return all:find(listening, 1, true) ~= nil
    end), "nc listens")
    return function()
        os.execute("pkill -P $(cat " .. pid_file .. ") 2>/dev/null; kill $(cat " .. pid_file .. ") 2>/dev/null; rm -f " .. pid_file)
    end
end

t.test("configuration", function()
    t.raises("mc.endpoint", memcache.pool_from_config, {}, "mc.")
    t.raises("mc.max_pool_size", memcache.pool_from_config, { ["mc.endpoint"] = ENDPOINT, ["mc.max_pool_size"] = "0" }, "mc.")
    local _, pool = client({ max_pool_size = "7", timeout = "100 milliseconds", connect_timeout = "1 second" })
    t.eq(pool.size, 7)
    t.eq(pool.endpoint, ENDPOINT)
    local f = memcache.MemcacheClient(lib.make_dump_and_compress_fn(), lib.decompress_and_load):parse("cache",
        { ["cache.endpoint"] = ENDPOINT })
    local c = f:make_object_for_context("cache", nil)
    t.ok(c:set("t:cfg", { 1, 2 }))
    t.eq(c:get("t:cfg"), { 1, 2 })
end)

t.test("every command", function()
    local c = client()
    t.eq(c:flush_all(), true)
    t.eq(c:get("t:a"), nil)
    t.eq(c:get("t:a", "dflt"), "dflt")
    t.eq(c:set("t:a", "1"), true)
    t.eq(c:get("t:a"), "1")
    t.eq(c:add("t:a", "2"), false, "add of a key that has a value")
    t.eq(c:add("t:b", "2"), true)
    t.eq(c:replace("t:c", "x"), false, "replace of a key without a value")
    t.eq(c:replace("t:b", "3"), true)
    t.eq(c:get("t:b"), "3")
    t.eq(c:append("t:b", "4"), true)
    t.eq(c:prepend("t:b", "2"), true)
    t.eq(c:get("t:b"), "234")
    t.eq(c:append("t:none", "x"), false)
    t.eq(c:incr("t:a"), 2)
    t.eq(c:incr("t:a", 10), 12)
    t.eq(c:decr("t:a", 5), 7)
    t.eq(c:decr("t:a", 100), 0, "decr stops at 0")
    t.eq(c:incr("t:none", 1), nil)
    -- counters equal to a reply kind's code (NOT_FOUND is 4, NOREPLY 14) are numbers all the same
    c:set("t:four", "3")
    t.eq(c:incr("t:four", 1), 4)
    t.eq(c:incr("t:four", 10), 14)
    t.eq(c:decr("t:four", 10), 4)
    t.eq(c:set("t:big", "18446744073709551614"), true)
    local n = c:incr("t:big", 1)
    t.ok(type(n) == "cdata" and tostring(n) == "18446744073709551615ULL", tostring(n))
    t.eq(c:incr("t:big", 1), 0, "incr wraps at 2^64")
    t.eq(c:touch("t:a", 100), true)
    t.eq(c:touch("t:none", 100), false)
    t.eq(c:delete("t:a"), true)
    t.eq(c:delete("t:a"), false)
    t.eq(c:get("t:a"), nil)
    local bin = "a\0b\r\nEND\r\n\255"
    t.eq(c:set("t:bin", bin), true)
    t.eq(c:get("t:bin"), bin, "binary-safe")
    t.eq(c:set("t:empty", ""), true)
    t.eq(c:get("t:empty"), "")
    local err = t.raises("CLIENT_ERROR", c.incr, c, "t:bin", 1)
    t.eq(err.class, "MemcacheError")
    t.eq({ err.client, err.endpoint, err.command }, { "mc", ENDPOINT, "incr" })
    t.eq(c:get("t:empty"), "", "the client goes on after an error reply")
end)

t.test("multi-key calls: one round trip", function()
    local c = client()
    local values = {}
    for i = 1, 250 do values["t:m" .. i] = "v" .. i end
    t.eq(c:set_many(values, 60), {})
    local keys = {}
    for i = 1, 260 do keys[i] = "t:m" .. i end
    local got = c:get_many(keys)
    local n = 0
    for k, v in pairs(got) do
        n = n + 1
        t.eq(v, values[k])
    end
    t.eq(n, 250, "the 250 that have a value, not the 10 that do not")
    t.eq(c:get_many({}), {})
    local g = c:gets_many({ "t:m1", "t:m2", "t:none" })
    t.eq(g["t:m1"][1], "v1")
    t.ok(type(g["t:m2"][2]) == "number", "a CAS unique")
    t.eq(g["t:none"], nil)
    t.eq(c:delete_many(keys), true)
    t.eq(c:get_many(keys), {})
    t.eq(c:set_many({}), {})
end)

t.test("gets and cas: conflicts", function()
    local c = client()
    c:delete("t:cas")
    t.eq({ c:gets("t:cas", "d", "cd") }, { "d", "cd" })
    t.eq(c:cas("t:cas", "x", 12345), nil, "cas of a key without a value")
    c:set("t:cas", "v1")
    local v, cas = c:gets("t:cas")
    t.eq(v, "v1")
    t.ok(type(cas) == "number" and cas > 0, "cas unique " .. tostring(cas))
    t.eq(c:set("t:cas", "v2"), true, "someone else stores")
    t.eq(c:cas("t:cas", "mine", cas), false, "a conflict")
    t.eq(c:get("t:cas"), "v2")
    local _, cas2 = c:gets("t:cas")
    t.eq(c:cas("t:cas", "mine", cas2), true)
    t.eq(c:get("t:cas"), "mine")
    t.eq(c:cas("t:cas", "again", tostring(cas2)), false, "a cas as a string")
    t.raises("unsigned 64-bit integer", c.cas, c, "t:cas", "x", -1)
end)

t.test("expiry", function()
    local c = client()
    t.eq(c:set("t:exp", "soon", 1), true)
    t.eq(c:set("t:gone", "x", -1), true)
    t.eq(c:get("t:gone"), nil, "a negative expiry is expired at once")
    t.eq(c:get("t:exp"), "soon")
    t.eq(c:set("t:touch", "x", 100), true)
    t.eq(c:touch("t:touch", -1), true)
    t.eq(c:get("t:touch"), nil, "touched into the past")
    runtime.sleep(2.1) -- memcached's clock ticks once a second
    t.eq(c:get("t:exp"), nil, "expired")
end)

t.test("big values: up to max_item_size, and larger ones refused", function()
    local c, pool = client()
    local big = string.rep("0123456789abcdef", 60 * 1024) -- 960 KB
    t.eq(c:set("t:bigv", big), true)
    t.eq(c:get("t:bigv"), big)
    local too = string.rep("x", 1024 * 1024 + 1)
    local err = t.raises("larger than max_item_size", c.set, c, "t:too", too)
    t.eq(err.class, "MemcacheError")
    t.eq(pool:stats().open, 1, "the connection is kept")
    -- the server's own limit (1 MB with its item header): its SERVER_ERROR
    err = t.raises("SERVER_ERROR", c.set, c, "t:too", string.rep("x", 1024 * 1024))
    t.eq(err.connection_ok, true)
    t.eq(c:get("t:bigv"), big, "the connection goes on")
    -- a client with a smaller limit refuses the value the server announces
    local small, spool = client({ max_item_size = "1000" })
    err = t.raises("more than max_item_size (1000)", small.get, small, "t:bigv")
    t.eq(err.class, "ConnectionError")
    t.eq(spool:stats().open, 0, "that connection is closed")
    -- many values in one get_many
    local vals, keys = {}, {}
    for i = 1, 20 do
        keys[i] = "t:bv" .. i
        vals[keys[i]] = string.rep(string.char(64 + i), 200 * 1024)
    end
    t.eq(c:set_many(vals), {})
    local got = c:get_many(keys)
    for i = 1, 20 do t.eq(got[keys[i]] == vals[keys[i]], true, keys[i]) end
end)

t.test("keys are checked, with a clear error", function()
    local c, pool = client()
    local cases = {
        { string.rep("k", 251), "251 bytes, longer than 250" },
        { "a b", "a space or a control character at byte 2" },
        { "a\nb", "a space or a control character at byte 2" },
        { "tab\t", "at byte 4" },
        { "del\127", "at byte 4" },
        { "", "key is empty" },
    }
    for _, case in ipairs(cases) do
        local err = t.raises(case[2], c.get, c, case[1])
        t.ok(clients.is_error(err), "a client error")
        t.eq(err.class, "MemcacheError")
        t.raises("invalid key", c.set, c, case[1], "v")
    end
    t.raises("a key is a string", c.get, c, 42)
    t.raises("at byte 2", c.get_many, c, { "ok", "a b" })
    t.raises("at byte 2", c.set_many, c, { ok = "1", ["a b"] = "2" })
    t.raises("at byte 2", c.delete_many, c, { "ok", "a b" })
    t.eq(c:set(string.rep("k", 250), "max"), true, "250 bytes is fine")
    t.eq(c:get(string.rep("k", 250)), "max")
    t.eq(c:set("caf\195\169", "utf8"), true, "bytes past ASCII are fine")
    t.eq(c:get("caf\195\169"), "utf8")
    t.eq(pool:stats().in_use, 0)
end)

t.test("Baseplate.py's serializers: flags, compression, errors", function()
    local c = json_client()
    local raw = client()
    local cases = {
        { "a string", "a string", 0 },
        { 42, "42", 2 },
        { -7, "-7", 2 },
        { true, "true", 1 },
        { 3.25, "3.25", 1 },
        { { a = { 1, 2, 3 } }, '{"a":[1,2,3]}', 1 },
    }
    for i, case in ipairs(cases) do
        local k = "t:ser" .. i
        t.eq(c:set(k, case[1]), true)
        t.eq(c:get(k), case[1])
    end
    -- what is stored: read with a deserializer that shows it
    local seen = {}
    local spy = client(nil, nil, function(key, data, flags) seen[key] = { data, flags } return data end)
    spy:get_many({ "t:ser1", "t:ser2", "t:ser4", "t:ser5", "t:ser6" })
    t.eq(seen["t:ser1"], { "a string", 0 })
    t.eq(seen["t:ser2"], { "42", 2 })
    t.eq(seen["t:ser4"], { "true", 1 })
    t.eq(seen["t:ser5"], { "3.25", 1 })
    t.eq(seen["t:ser6"], { '{"a":[1,2,3]}', 1 })
    -- longer than min_compress_length (100): zlib, flag 8 added
    local long = { text = string.rep("compress me ", 50) }
    t.eq(c:set("t:z", long), true)
    t.eq(c:get("t:z"), long)
    spy:get("t:z")
    t.eq(seen["t:z"][2], 1 + 8)
    t.ok(#seen["t:z"][1] < 200, "compressed")
    t.eq(lib.decompress(seen["t:z"][1]), cjson.encode(long))
    -- 64-bit integers
    t.eq(c:set("t:i64", 1152921504606846976LL), true)
    t.eq(tostring(c:get("t:i64")), "1152921504606846976LL")
    -- values this client cannot read raise
    local raw_set = function(key, data, flags)
        local w = client(nil, function(_, v) return v, flags end)
        w:set(key, data)
    end
    raw_set("t:pickle", "\128\2}q\0U\1aK\1s.", 1)
    local err = t.raises("Python pickle", c.get, c, "t:pickle")
    t.eq(err.class, "MemcacheError")
    t.eq(err.connection_ok, true)
    raw_set("t:flags", "x", 16)
    t.raises("flags 16", c.get, c, "t:flags")
    raw_set("t:badjson", "{nope", 1)
    t.raises("not JSON", c.get, c, "t:badjson")
    raw_set("t:badint", "12x", 2)
    t.raises("not a 64-bit integer", c.get, c, "t:badint")
    raw_set("t:badz", "not zlib", 8)
    t.raises("not a zlib stream", c.get, c, "t:badz")
    -- a zlib bomb: 64 MB + 1 of zeros
    raw_set("t:bomb", lib.compress(string.rep("\0", lib.max_inflated_size + 1), 9), 8)
    t.raises("inflates beyond", c.get, c, "t:bomb")
    -- without a deserializer, flags other than 0 raise too
    t.raises("no deserializer", raw.get, raw, "t:ser2")
    t.raises("without a serializer", raw.set, raw, "t:x", { 1 })
    -- a value JSON cannot hold
    t.raises("cannot be serialized", c.set, c, "t:fn", { f = print })
    t.raises("not a finite number", c.set, c, "t:nan", 0 / 0)
end)

t.test("spans: {name}.{command}, failed by errors", function()
    local f = memcache.MemcacheClient():parse("cache", { ["cache.endpoint"] = ENDPOINT })
    local bp = baseplate.Baseplate()
    local finished = {}
    bp:register({
        on_server_span_created = function(_, _, span)
            span:register({
                on_child_span_created = function(_, child)
                    child:register({ on_finish = function(_, err) finished[#finished + 1] = { child.name, err ~= nil } end })
                end,
            })
        end,
    })
    local span = bp:make_server_span({}, "req")
    span:start()
    local c = f:make_object_for_context("cache", span)
    c:set("t:span", "v")
    c:get("t:span")
    c:get_many({ "t:span" })
    pcall(c.incr, c, "t:span", 1)
    span:finish()
    t.eq(finished, { { "cache.set", false }, { "cache.get", false }, { "cache.get_many", false },
        { "cache.incr", true } })
end)

t.test("pool metrics", function()
    local f = memcache.MemcacheClient():parse("cache", { ["cache.endpoint"] = ENDPOINT, ["cache.max_pool_size"] = "3" })
    f:make_object_for_context("cache", nil):get("t:x")
    local seen = {}
    local batch = { gauge = function(_, name) return { replace = function(_, v) seen[name] = v end } end }
    f:report_runtime_metrics(batch)
    t.eq(seen, { ["pool.size"] = 3, ["pool.in_use"] = 0, ["pool.open_and_available"] = 1 })
end)

t.test("timeouts never lose a pool slot", function()
    local stop = stand_in(PORT + 101)
    local ok, err = pcall(function()
        local c, pool = client({ timeout = "50 milliseconds", max_pool_size = "2" }, nil, nil,
            "127.0.0.1:" .. (PORT + 101))
        for _ = 1, 5 do
            local e = t.raises("timed out after 0.05s", c.get, c, "k")
            t.eq(e.class, "TimeoutError")
            t.eq(e.endpoint, "127.0.0.1:" .. (PORT + 101))
        end
        local s = pool:stats()
        t.eq({ s.in_use, s.open }, { 0, 0 })
    end)
    stop()
    if not ok then error(err, 0) end
    -- the pool's own wait
    local c, pool = client({ max_pool_size = "1", pool_timeout = "100 milliseconds" })
    local stop2 = stand_in(PORT + 102)
    local slow = client({ max_pool_size = "1", pool_timeout = "100 milliseconds", timeout = "300 milliseconds" },
        nil, nil, "127.0.0.1:" .. (PORT + 102))
    local done = false
    runtime.spawn(function() pcall(slow.get, slow, "k") done = true end)
    -- (once the slow call holds the connection: a get made in the same
    -- loop turn would go with it, in one write)
    t.ok(t.wait_until(function() return slow._pool:stats().in_use == 1 end), "the slow call holds the connection")
    local e = t.raises("no connection available", slow.get, slow, "k")
    t.eq(e.class, "TimeoutError")
    t.ok(t.wait_until(function() return done end), "the slow call ended")
    stop2()
    t.eq(slow._pool:stats().in_use, 0)
    t.eq(c:set("t:ok", "1"), true)
    t.eq(pool:stats().in_use, 0)
end)

t.test("a server killed mid-call, and one that comes back", function()
    local stop = stand_in(PORT + 103)
    local c, pool = client({ timeout = "5 seconds" }, nil, nil, "127.0.0.1:" .. (PORT + 103))
    local err
    runtime.spawn(function() local _; _, err = pcall(c.get, c, "k") end)
    runtime.sleep(0.1)
    stop()
    t.ok(t.wait_until(function() return err ~= nil end), "the call ended")
    t.eq(err.class, "ConnectionError")
    t.ok(err.message:find("closed the connection", 1, true), err.message)
    t.eq(pool:stats().open, 0)
    local e = t.raises("refused", c.get, c, "k")
    t.eq(e.class, "ConnectionError")
    t.eq(pool:stats().in_use, 0)
    -- a private memcached, killed while its connection idles in the pool
    local port = PORT + 104
    local dir = os.tmpname()
    os.execute("rm -f " .. dir .. "; mkdir " .. dir .. "; chmod 777 " .. dir)
    local pidf = dir .. "/memcached.pid"
    local function start()
        os.execute("rm -f " .. pidf)
        local as_root = io.popen("id -u"):read("*l") == "0"
        assert(os.execute("memcached -d -l 127.0.0.1 -p " .. port .. " -U 0 " .. (as_root and "-u nobody " or "")
            .. "-P " .. pidf) == 0)
        t.ok(t.wait_until(function() local f = io.open(pidf) if f then f:close() end return f ~= nil end),
            "memcached wrote its pid")
    end
    start()
    local m, mpool = client(nil, nil, nil, "127.0.0.1:" .. port)
    t.ok(t.wait_until(function() return pcall(m.set, m, "k", "v") end), "the private memcached answers")
    os.execute("kill -9 $(cat " .. pidf .. ")")
    local C = require("baseplate.core").C
    t.ok(t.wait_until(function() return C.bp_memcache_broken(mpool.idle[1].conn.c) == 1 end),
        "the idle connection knows it is dead")
    t.raises("refused", m.get, m, "k")
    start()
    t.ok(t.wait_until(function() return pcall(m.get, m, "k") end), "a fresh connection to the new server")
    t.eq(m:get("k"), nil)
    t.eq(mpool:stats().in_use, 0)
    os.execute("kill $(cat " .. pidf .. "); rm -rf " .. dir)
end)

t.test("hostile replies are errors, never allocations or hangs", function()
    local cases = {
        { "VALUE k 0 2000000000\\r\\n", "more than max_item_size" },
        { "VALUE k 0 3\\r\\nabcdEND\\r\\n", "not followed by" },
        { "STORED\\r\\n", "does not answer the command" },
        { "VALUE k x 3\\r\\nabc\\r\\nEND\\r\\n", "malformed flags" },
        { "VALUE k 0 1\\r\\na\\r\\nVALUE k 0 1\\r\\na\\r\\nEND\\r\\n", "more values than keys" },
        { string.rep("x", 2000), "longer than 1024" },
        { "END\\n", "not ended by" },
    }
    for i, case in ipairs(cases) do
        local port = PORT + 110 + i
        local stop = stand_in(port, case[1])
        local ok, err = pcall(function()
            local c, pool = client({ timeout = "5 seconds" }, nil, nil, "127.0.0.1:" .. port)
            local e = t.raises(case[2], c.get, c, "k")
            t.eq(e.class, "ConnectionError")
            t.eq(pool:stats().open, 0)
        end)
        stop()
        if not ok then error(err, 0) end
    end
end)

t.test("noreply: every command that has it, pymemcache's results", function()
    local c = client()
    c:delete("t:nr")
    t.eq(c:set("t:nr", "1", 0, true), true)
    t.eq(c:get("t:nr"), "1", "a noreply set is carried out")
    t.eq(c:add("t:nr", "2", 0, true), true, "add with noreply is true even when it does not store")
    t.eq(c:get("t:nr"), "1")
    t.eq(c:replace("t:nr", "5", 0, true), true)
    t.eq(c:append("t:nr", "0", 0, true), true)
    t.eq(c:prepend("t:nr", "1", 0, true), true)
    t.eq(c:get("t:nr"), "150")
    t.eq(c:incr("t:nr", 5, true), nil, "incr with noreply is nil")
    t.eq(c:decr("t:nr", 1, true), nil)
    t.eq(c:get("t:nr"), "154")
    local _, cas = c:gets("t:nr")
    t.eq(c:cas("t:nr", "9", cas, 0, true), true)
    t.eq(c:get("t:nr"), "9")
    t.eq(c:touch("t:nr", 100, true), true)
    t.eq(c:set_many({ ["t:nr1"] = "a", ["t:nr2"] = "b" }, 0, true), {})
    t.eq(c:get_many({ "t:nr1", "t:nr2" }), { ["t:nr1"] = "a", ["t:nr2"] = "b" })
    t.eq(c:delete("t:nr1", true), true)
    t.eq(c:delete_many({ "t:nr2", "t:nr" }, true), true)
    t.eq(c:get_many({ "t:nr1", "t:nr2", "t:nr" }), {})
    t.eq(c:delete("t:nr", true), true, "true even when there was nothing")
    t.raises("noreply must be a boolean", c.set, c, "t:nr", "1", 0, "yes")
    -- default_noreply: the calls that do not say go with noreply
    local d = client({ default_noreply = "true" })
    t.eq(d:add("t:nr3", "x"), true)
    t.eq(d:add("t:nr3", "y"), true, "no reply waited for")
    t.eq(d:get("t:nr3"), "x")
    t.eq(d:add("t:nr3", "y", 0, false), false, "noreply=false waits")
    t.eq(d:set("t:nr4", "7", 0, false), true)
    t.eq(d:incr("t:nr4", 1), 8, "incr does not follow default_noreply")
    t.eq(d:delete("t:nr4"), true)
    t.eq(c:get("t:nr4"), nil)
end)

t.test("noreply and waiting calls from concurrent coroutines stay in step", function()
    -- one connection: every coroutine's commands go through it in turn
    local c, pool = client({ max_pool_size = "1" })
    t.eq(c:set("t:count", "0"), true)
    local done, failures = 0, {}
    for w = 1, 10 do
        runtime.spawn(function()
            local ok, err = pcall(function()
                local k = "t:co" .. w
                for i = 1, 30 do
                    t.eq(c:set(k, "v" .. i, 0, true), true)
                    t.eq(c:incr("t:count", 1, true), nil)
                    if c:get(k) ~= "v" .. i then error("get " .. k .. " after a noreply set: " .. tostring(c:get(k))) end
                    t.eq(c:touch(k, 100, true), true)
                    t.eq(c:delete(k .. ":none", true), true)
                    local v, cas = c:gets(k)
                    if v ~= "v" .. i or type(cas) ~= "number" then error("gets " .. k .. ": " .. tostring(v)) end
                    t.eq(c:append(k, "+", 0, true), true)
                    if i % 7 == 0 then runtime.sleep(0.001) end
                end
            end)
            if not ok then failures[#failures + 1] = tostring(err) end
            done = done + 1
        end)
    end
    t.ok(t.wait_until(function() return done == 10 end, 20), "every coroutine ended")
    t.eq(failures, {})
    t.eq(c:get("t:count"), "300", "every noreply incr was carried out")
    t.eq(pool:stats().open, 1, "the one connection was never broken")
    -- several connections
    local m, mpool = client({ max_pool_size = "3" })
    done = 0
    for w = 1, 12 do
        runtime.spawn(function()
            local ok, err = pcall(function()
                for i = 1, 25 do
                    m:set("t:m" .. w, tostring(i), 0, true)
                    m:delete("t:gone" .. w, true)
                    if m:set("t:w" .. w, "x" .. i) ~= true then error("set") end
                    if m:get("t:w" .. w) ~= "x" .. i then error("get") end
                end
            end)
            if not ok then failures[#failures + 1] = tostring(err) end
            done = done + 1
        end)
    end
    t.ok(t.wait_until(function() return done == 12 end, 20), "every coroutine ended")
    t.eq(failures, {})
    t.ok(mpool:stats().open <= 3, "no connection beyond the pool")
end)

t.test("what a server says to noreply commands is skipped, never taken for a reply", function()
    local port = PORT + 120
    local pidf = os.tmpname()
    assert(os.execute("(/usr/bin/python3 " .. os.getenv("BASEPLATE_SOURCE_DIR")
        .. "/tests/integration/tools/memcache_noreply_server.py " .. port .. " >/dev/null 2>&1 & echo $! >" .. pidf .. ")") == 0)
    local ok, err = pcall(function()
        local c, pool = client({ max_pool_size = "2", timeout = "5 seconds" }, nil, nil, "127.0.0.1:" .. port)
        t.ok(t.wait_until(function() return pcall(c.version, c) end), "the stand-in answers")
        t.eq(c:version(), "0.0-noreply-stand-in")
        local closed = 0
        local close = pool.close_fn
        pool.close_fn = function(conn) closed = closed + 1 return close(conn) end
        local done, failures = 0, {}
        for w = 1, 8 do
            runtime.spawn(function()
                local okw, e = pcall(function()
                    for i = 1, 40 do
                        -- each says "SERVER_ERROR out of memory storing object"
                        t.eq(c:set("t:nr" .. w, "lost", 0, true), true)
                        t.eq(c:delete("t:x" .. w, true), true)
                        if i % 3 == 0 then c:set_many({ a = "1", b = "2" }, 0, true) end
                        if c:set("t:k" .. w, "v" .. i) ~= true then error("set") end
                        local v = c:get("t:k" .. w)
                        if v ~= "v" .. i then error("get: " .. tostring(v)) end
                        if i % 5 == 0 then runtime.sleep(0.003) end -- lines that come while nothing is owed
                    end
                end)
                if not okw then failures[#failures + 1] = tostring(e) end
                done = done + 1
            end)
        end
        t.ok(t.wait_until(function() return done == 8 end, 30), "every coroutine ended")
        t.eq(failures, {})
        t.eq(closed, 0, "no connection was broken")
        t.eq(pool:stats().open, 2)
    end)
    os.execute("kill $(cat " .. pidf .. ") 2>/dev/null; rm -f " .. pidf)
    if not ok then error(err, 0) end
end)

t.test("stats, version, gat and gats, cache_memlimit, close and quit", function()
    local c, pool = json_client()
    local st = c:stats()
    t.ok(type(st.pid) == "number" and st.pid > 0, "pid " .. tostring(st.pid))
    t.ok(type(st.version) == "string" and st.version:match("^%d+%.%d+"), "version " .. tostring(st.version))
    t.ok(type(st.rusage_user) == "number", "rusage_user a number")
    t.ok(type(st.curr_connections) == "number", "curr_connections")
    local settings = c:stats("settings")
    t.eq(type(settings.maxbytes), "number")
    t.eq(type(settings.cas_enabled), "boolean")
    t.eq(type(c:stats("items")), "table")
    t.eq(c:stats("reset"), {})
    t.raises("printable ASCII", c.stats, c, "a\nb")
    t.eq(c:version(), st.version)
    c:set("t:gat", { 1 }, 100)
    t.eq(c:gat("t:gat", 1), { 1 })
    t.eq(c:gat("t:none", 1, "d"), "d")
    local v, cas = c:gats("t:gat", 100)
    t.eq(v, { 1 })
    t.ok(type(cas) == "number", "a CAS unique")
    t.eq({ c:gats("t:none", 1, "d", "cd") }, { "d", "cd" })
    t.eq(c:cas("t:gat", { 2 }, cas), true)
    t.eq(c:gat("t:gat", -1), { 2 }, "read, then expired")
    t.eq(c:get("t:gat"), nil)
    t.eq(c:cache_memlimit(64), true)
    t.eq(pool:stats().open, 1)
    c:close()
    t.eq(pool:stats().open, 0, "close: the idle connections are closed")
    t.eq(c:version(), st.version, "and the next call opens one")
    c:quit()
    t.eq(pool:stats().open, 0)
end)

t.test("gets made in the same loop turn go in one write, each with its own result", function()
    local c, pool = json_client({ max_pool_size = "10" })
    for i = 1, 40 do c:set("t:g" .. i, { i }) end
    c:set("t:gbin", "\255")
    local results, errors, done = {}, {}, 0
    for i = 1, 60 do
        runtime.spawn(function()
            local ok, v = pcall(function()
                if i % 10 == 0 then return c:gets("t:g" .. (i % 40 + 1)) end
                if i % 15 == 0 then return c:gat("t:none" .. i, 100, "dflt") end
                if i == 7 then return c:incr("t:gbin", 1) end -- CLIENT_ERROR: its own failure
                return c:get("t:g" .. (i % 40 + 1))
            end)
            if ok then results[i] = v else errors[i] = v end
            done = done + 1
        end)
    end
    t.ok(t.wait_until(function() return done == 60 end), "every call ended")
    for i = 1, 60 do
        if i == 7 then
            t.ok(errors[7] and errors[7].message:find("CLIENT_ERROR", 1, true), tostring(errors[7]))
        elseif i % 15 == 0 and i % 10 ~= 0 then
            t.eq(results[i], "dflt", "gat " .. i)
        else
            t.eq(results[i], { i % 40 + 1 }, "call " .. i)
        end
    end
    -- a get where nothing can wait raises, and leaves no group behind
    local co = coroutine.wrap(function() return pcall(c.get, c, "t:g1") end)
    local okw, werr = co()
    t.eq(okw, false)
    t.ok(tostring(werr):find("cannot wait here", 1, true), tostring(werr))
    t.eq(c:get("t:g1"), { 1 }, "the next get is not stuck in a group that never goes")
    -- 60 calls at once: groups of at most 16, not a connection each
    t.ok(pool:stats().open <= 5, "the gets shared connections: " .. pool:stats().open .. " opened")
    -- a connection failure fails every member of a group
    local stop = stand_in(PORT + 130, "VALUE k 0 1\r\nx\r\nSTORED\r\n")
    local ok, err = pcall(function()
        local h, hpool = client({ timeout = "5 seconds" }, nil, nil, "127.0.0.1:" .. (PORT + 130))
        local errs, n = {}, 0
        for i = 1, 5 do
            runtime.spawn(function()
                local okc, e = pcall(h.get, h, "k")
                errs[i] = not okc and e.class or "no error"
                n = n + 1
            end)
        end
        t.ok(t.wait_until(function() return n == 5 end), "every call ended")
        t.eq(errs, { "ConnectionError", "ConnectionError", "ConnectionError", "ConnectionError", "ConnectionError" })
        t.eq(hpool:stats().open, 0)
    end)
    stop()
    if not ok then error(err, 0) end
end)

t.test("get_many and delete_many with many keys", function()
    local c = client()
    local values, keys = {}, {}
    for i = 1, 3000 do
        keys[i] = "t:many:" .. i .. ":" .. string.rep("k", 180)
        values[keys[i]] = "v" .. i
    end
    t.eq(c:set_many(values), {})
    local got = c:get_many(keys)
    local n = 0
    for k, v in pairs(got) do
        n = n + 1
        if v ~= values[k] then t.eq(v, values[k], k) end
    end
    t.eq(n, 3000)
    t.eq(c:delete_many(keys), true)
    t.eq(c:get_many(keys), {})
end)

t.test("a burst of large values does not stay pinned to the pooled connections", function()
    local C = require("baseplate.core").C
    local c, pool = client({ max_pool_size = "1" })
    local big = string.rep("b", 900 * 1024)
    t.eq(c:set("t:pin", "small"), true)
    local conn = pool.idle[1].conn
    local base = tonumber(C.bp_memcache_buffered(conn.c))
    t.ok(base < 64 * 1024, "small to begin with: " .. base)
    for i = 1, 3 do t.eq(c:set("t:pin" .. i, big), true) end
    t.eq(pool.idle[1].conn, conn, "the same connection")
    local after = tonumber(C.bp_memcache_buffered(conn.c))
    t.ok(after < 64 * 1024, "the sets' bytes are not kept once written: " .. after)
    t.eq(c:set_many({ a = big, b = big }), {})
    t.ok(tonumber(C.bp_memcache_buffered(conn.c)) < 64 * 1024, "nor a set_many's")
    t.eq(c:get("t:pin1"), big)
    t.eq(c:get("t:pin"), "small")
    after = tonumber(C.bp_memcache_buffered(conn.c))
    t.ok(after < 128 * 1024, "a big reply's buffer is given back at the next call: " .. after)
end)

t.done()
