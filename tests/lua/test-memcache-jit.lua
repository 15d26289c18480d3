-- The memcache get path stays JIT-compiled (bench/README.md, "memcache,
-- after coalescing"): concurrent gets against the real memcached of
-- tests/services.sh, bare and inside spans, while LuaJIT's trace events are
-- watched. Traces must be compiled in baseplate.clients.memcache, and no
-- NYI abort may happen in baseplate's own modules.
local t = require("testlib")
local baseplate = require("baseplate")
local memcache = require("baseplate.clients.memcache")
local lib = require("baseplate.clients.memcache.lib")
local runtime = require("baseplate.runtime")
local jitwatch = require("jitwatch")

local ENDPOINT = assert(os.getenv("BP_TEST_MEMCACHED_ENDPOINT"), "BP_TEST_MEMCACHED_ENDPOINT is set by ctest")
local raw = { ["mc.endpoint"] = ENDPOINT, ["mc.max_pool_size"] = "8" }
local pool = memcache.pool_from_config(raw, "mc.", lib.make_dump_and_compress_fn(1000), lib.decompress_and_load)
local bare = memcache.monitored("mc", nil, pool)
bare:set("t:jit", { n = 1 })
bare:set("t:jits", "plain")

local bp = baseplate.Baseplate({})
local factory = memcache.context_factory(pool, "mc")

local N, WORKERS = 400, 20
local good, bad, done = 0, 0, 0
local watch = jitwatch.watch()
for w = 1, WORKERS do
    runtime.spawn(function()
        local span = bp:make_server_span({}, "jit")
        span:start()
        local c = w % 2 == 0 and bare or factory:make_object_for_context("mc", span)
        for i = 1, N do
            local v = c:get(i % 2 == 0 and "t:jit" or "t:jits")
            if (i % 2 == 0 and type(v) == "table" and v.n == 1) or v == "plain" then
                good = good + 1
            else
                bad = bad + 1
            end
        end
        span:finish()
        done = done + 1
    end)
end
local deadline = baseplate.now() + 30
while done < WORKERS and baseplate.now() < deadline do
    baseplate.sleep(0.02)
end
watch.stop()

t.test("every get answered", function()
    t.eq({ good, bad }, { N * WORKERS, 0 })
end)

t.test("the get path compiles to traces", function()
    t.ok(jitwatch.traces_in(watch.stops, "baseplate/clients/memcache/") > 0,
        "no trace in baseplate.clients.memcache; traces: " .. table.concat(watch.stops, ", "))
end)

-- Known and left ("return to lower frame": a trace that returns into a
-- pcall's frame): lib.decompress_and_load's return from the pcall'd
-- deserializer, and the pool's checkout, called under a pcall so that a
-- pool timeout fails every member of a group.
local function known(a)
    return a:find("baseplate/clients/memcache/lib.lua:%d+: NYI: return to lower frame") ~= nil
        or a:find("baseplate/clients/pool.lua:%d+: NYI: return to lower frame") ~= nil
end

t.test("no NYI aborts in baseplate's modules", function()
    t.eq(jitwatch.nyi(watch.aborts, known), {}, "NYI aborts")
end)

t.done()
