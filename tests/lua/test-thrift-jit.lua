-- The Thrift call path stays JIT-compiled, as the HTTP one does
-- (test-http-jit.lua): serve calls from this process, made by our own
-- client in another coroutine of it, and watch LuaJIT's trace events. A
-- trace must be compiled through baseplate.thrift, and no NYI abort may
-- happen in baseplate's own modules (server or client side).
local t = require("testlib")
local baseplate = require("baseplate")
local thrift = require("baseplate.thrift")
local thrift_server = require("baseplate.server.thrift")
local thrift_client = require("baseplate.clients.thrift")
local runtime = require("baseplate.runtime")

local schema = thrift.load("../integration/apps/thrift/testsvc.thrift")
local NotFound = schema:struct("NotFound")
local served = 0
local app_config = { ["metrics.tagging"] = "true" }
local bp = baseplate.Baseplate(app_config)
bp:configure_observers()
local handler = {}
function handler.add(_, a, b)
    served = served + 1
    return a + b
end
function handler.get(context, id)
    served = served + 1
    context.span:incr_tag("gets")
    if id == 7LL then error(NotFound:new({ id = id, message = "no" })) end
    return "one"
end
local processor = thrift.processor(schema:service("Test"), setmetatable(handler, {
    __index = function() return function() end end,
}), { baseplate = bp })

local jitwatch = require("jitwatch")
local listener, port = jitwatch.bind_free()
local srv = thrift_server.make_server({}, listener, processor)

local client = thrift_client.client_from_config(schema:service("Test"),
    { ["t.endpoint"] = "127.0.0.1:" .. port }, "t.")

local watch = jitwatch.watch()
local stops, aborts = watch.stops, watch.aborts

local N = 600
local results = { sums = 0, not_found = 0 }
local done = false
runtime.spawn(function()
    for i = 1, N do
        if i % 3 == 0 then
            local ok, err = pcall(client.get, client, 7LL)
            if not ok and require("baseplate.thrift.codec").struct_of(err) == NotFound then
                results.not_found = results.not_found + 1
            end
        elseif client:add(i, 1) == i + 1 then
            results.sums = results.sums + 1
        end
    end
    done = true
end)
local deadline = baseplate.now() + 20
while not done and baseplate.now() < deadline do
    baseplate.sleep(0.02)
end
watch.stop()
srv:stop()

t.test("every call served in-process", function()
    t.eq(served, N)
    t.eq(results.sums, N - N / 3)
    t.eq(results.not_found, N / 3)
end)

t.test("the call path compiles to traces", function()
    local through = 0
    for _, src in ipairs(stops) do
        if src:find("baseplate/thrift/", 1, true) or src:find("baseplate/clients/thrift.lua", 1, true) then
            through = through + 1
        end
    end
    t.ok(#stops > 0, "no trace compiled at all")
    t.ok(through > 0, "no trace in baseplate.thrift or the client; traces: " .. table.concat(stops, ", "))
end)

-- Known and left: the connection pool's with() spans the call's wait (the
-- coroutine yields inside it), and a trace that begins after the resume
-- ends where with() returns below the frame it began in ("return to lower
-- frame"), or at its vararg return; LuaJIT runs that part interpreted.
local function known(a)
    return a:find("baseplate/clients/pool.lua:%d+: NYI") ~= nil
end

t.test("no NYI aborts in baseplate's modules", function()
    t.eq(jitwatch.nyi(aborts, known), {}, "NYI aborts")
end)

t.done()
