-- baseplate.testing.thrift_client: a processor's handlers called through
-- the real Thrift server over socket pairs (no listening socket): results,
-- declared exceptions, the server span, the client's timeout, concurrent
-- calls connecting at once, and a stopped server refusing calls.
local t = require("testlib")
local baseplate = require("baseplate")
local thrift = require("baseplate.thrift")
local codec = require("baseplate.thrift.codec")
local testing = require("baseplate.testing")

local schema = thrift.load("../integration/apps/thrift/testsvc.thrift")
local service = schema:service("Test")
local NotFound = schema:struct("NotFound")
local bp = baseplate.Baseplate({})
local recorder = testing.recorder()
bp:register(recorder)

local handler = setmetatable({}, { __index = function() return function() end end })
function handler.add(context, a, b)
    context.span:set_tag("summed", "yes")
    return a + b
end
function handler.get(_, id)
    if id == 7LL then error(NotFound:new({ id = id, message = "no user 7" })) end
    return "user " .. tostring(id):gsub("LL$", "")
end
function handler.fail(_, how) error("handler failed: " .. how) end
function handler.sleep(_, seconds) baseplate.sleep(seconds) end
local processor = thrift.processor(service, handler, { baseplate = bp })

local client, stop = testing.thrift_client(processor, service)

t.test("a call's result, through the real server", function()
    t.eq(client:add(40, 2), 42LL)
    t.eq(client:get(5), "user 5")
end)

t.test("the server span of the call", function()
    recorder:clear()
    client:add(1, 2)
    local span = recorder:server_span()
    t.ok(span, "no server span")
    t.eq(span.name, "add")
    t.eq(span.tags.summed, "yes")
end)

t.test("a declared exception reaches the caller as its struct", function()
    local ok, err = pcall(client.get, client, 7)
    t.eq(ok, false)
    t.eq(codec.struct_of(err), NotFound)
    t.eq(err.message, "no user 7")
end)

t.test("an unexpected error is an application exception", function()
    local ok, err = pcall(client.fail, client, "badly")
    t.eq(ok, false)
    t.ok(tostring(err):find("handler failed: badly", 1, true) or tostring(err):find("TApplicationException", 1, true),
        "error: " .. tostring(err))
end)

t.test("the client's timeout applies to a call", function()
    local quick, stop_quick = testing.thrift_client(processor, service, { timeout = 0.3 })
    local started = baseplate.now()
    local ok, err = pcall(quick.sleep, quick, 2)
    t.eq(ok, false, "the call outlived the client's timeout")
    t.ok(baseplate.now() - started < 1.5, "it failed when the timeout passed")
    t.eq(err.type, require("baseplate.clients.thrift").TIMED_OUT, "a TIMED_OUT transport error: " .. tostring(err))
    t.eq(quick:add(1, 1), 2LL, "the client still works after")
    stop_quick()
end)

t.test("many calls at once share the pool", function()
    local runtime = require("baseplate.runtime")
    local done, good = 0, 0
    for i = 1, 20 do
        runtime.spawn(function()
            local ok, r = pcall(client.add, client, i, i)
            if ok and r == 2LL * i then good = good + 1 elseif not ok then print("call failed: " .. tostring(r)) end
            done = done + 1
        end)
    end
    t.wait_until(function() return done == 20 end, 10)
    t.eq(good, 20)
end)

t.test("a stopped server refuses calls", function()
    stop()
    local ok, err = pcall(client.add, client, 1, 1)
    t.eq(ok, false)
    t.ok(tostring(err):find("testing", 1, true), "error names the client: " .. tostring(err))
end)

t.test("bad arguments are named", function()
    t.raises("expected a processor", testing.thrift_client, {}, service)
    t.raises("expected a service", testing.thrift_client, processor, {})
end)

t.done()
