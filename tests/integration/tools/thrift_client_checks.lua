-- The checks of tests/integration/test-thrift-client.sh, run by bp-lua-test:
-- baseplate.clients.thrift against real servers, whose addresses come from
-- the environment: LUA_PORT (our Lua server, apps/thriftapp.lua, closing
-- idle connections after half a second), PY_PORT and PY_UNIX (the
-- python3-thrift THeader server, tools/thrift_server.py, on TCP and on a
-- UNIX socket), VICTIM_PORT/VICTIM_PID (another Python server, killed in
-- the middle of a call), PROXY_PORT (service A, apps/thriftproxy.lua,
-- calling the Lua server as B) and DEAD_PORT (nothing listens there).
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local thrift = require("baseplate.thrift")
local codec = require("baseplate.thrift.codec")
local tc = require("baseplate.clients.thrift")

local SOURCE_DIR = assert(os.getenv("BASEPLATE_SOURCE_DIR"))
local schema = thrift.load(SOURCE_DIR .. "/tests/integration/apps/thrift/testsvc.thrift")
local Test = schema:service("Test")
local NotFound = schema:struct("NotFound")

local function env(name) return assert(os.getenv(name), name) end
local LUA_EP = "127.0.0.1:" .. env("LUA_PORT")
local PY_EP = "127.0.0.1:" .. env("PY_PORT")
local PY_UNIX = env("PY_UNIX")
local VICTIM_EP = "127.0.0.1:" .. env("VICTIM_PORT")
local PROXY_EP = "127.0.0.1:" .. env("PROXY_PORT")
local DEAD_EP = "127.0.0.1:" .. env("DEAD_PORT")

local function client(endpoint, extra, name)
    local raw = { ["c.endpoint"] = endpoint }
    for k, v in pairs(extra or {}) do raw["c." .. k] = v end
    local c = tc.client_from_config(Test, raw, "c.")
    if name then rawset(c, "_name", name) end
    return c, tc.pool_of(c)
end

local ALL = {
    b = true, by = -7, s = 300, i = -70000, l = 1234567890123LL, d = 2.5, str = "héllo", bin = "\0\1\255",
    li = { 1, 2, 3 }, ss = { "x" }, mp = { k = { x = 1, y = 2 } }, color = 3, pt = { x = 5, y = 6 },
    nested = { { 1LL, 2LL }, {} },
}

local function values(c, who)
    t.eq(c:whoami(), who, "an inherited method")
    t.eq(c:add(2, 40), 42LL)
    t.eq(c:add(2 ^ 40, 1LL), 1099511627777LL)
    t.eq(c:echo(ALL), ALL, "every type")
    t.eq(c:get(1), "one")
    c:note("written " .. who)
    t.eq(c:last_note(), "written " .. who, "a oneway call went through")
    local err = t.raises("no such id", c.get, c, 2)
    t.eq(codec.struct_of(err), NotFound, "the declared exception is the value of its struct")
    t.eq(err.id, 2LL)
    err = t.raises("told to", c.fail, c, "app")
    t.eq(getmetatable(err), thrift.AppError)
    t.eq(err.type, thrift.app_error.UNKNOWN)
    err = t.raises("Internal error", c.fail, c, "crash")
    t.eq(err.type, thrift.app_error.INTERNAL_ERROR)
    t.eq(c:whoami(), who, "the connection goes on after exceptions")
end

t.test("our client calls our Lua server (binary and compact)", function()
    local c, pool = client(LUA_EP)
    values(c, "thriftapp")
    t.eq(pool:stats().open, 1, "one connection served every call")
    values(client(LUA_EP, { protocol = "compact" }), "thriftapp")
end)

t.test("our client calls a python3-thrift THeader server (binary and compact)", function()
    local c, pool = client(PY_EP)
    values(c, "pyserver")
    t.eq(pool:stats().open, 1)
    t.eq(pool:stats().in_use, 0)
    values(client(PY_EP, { protocol = "compact" }), "pyserver")
end)

t.test("a UNIX socket endpoint", function()
    local c = client(PY_UNIX)
    t.eq(c:whoami(), "pyserver")
    t.eq(c:add(1, 1), 2LL)
end)

t.test("replies: a large one read in pieces, one over max_frame_size refused", function()
    local c, pool = client(PY_EP, { timeout = "10 seconds" })
    local big = { str = string.rep("0123456789", 300000) }
    t.eq(c:echo(big).str, big.str, "a 3 MB reply")
    local small, spool = client(PY_EP, { max_frame_size = 1024 })
    t.eq(small:whoami(), "pyserver")
    local err = t.raises("max_frame_size is 1024 bytes", small.echo, small, { str = string.rep("x", 4000) })
    t.eq(getmetatable(err), tc.TransportException)
    t.eq(spool:stats().open, 0, "the connection was closed")
    t.eq(small:whoami(), "pyserver")
    t.eq(pool:stats().in_use, 0)
end)

t.test("a call without a span sends the client's timeout as its budget", function()
    local h = client(PY_EP, { timeout = "250 milliseconds" }):headers()
    t.eq(h["Deadline-Budget"], "250")
    t.eq(h.Trace, nil, "no trace without a span")
end)

t.test("a slow method: a timeout within the limit, and no slot lost", function()
    local c, pool = client(PY_EP, { timeout = "300 milliseconds", size = 1 })
    t.eq(c:whoami(), "pyserver")
    local t0 = runtime.now()
    local err = t.raises("timed out after 0.3s waiting for the reply", c.sleep, c, 2)
    local took = runtime.now() - t0
    t.ok(took >= 0.28 and took < 0.8, "the error came after " .. took .. "s")
    t.eq(getmetatable(err), tc.TransportException)
    t.eq(err.type, tc.TIMED_OUT)
    t.ok(err.message:find("thrift client c: sleep (" .. PY_EP .. ") failed", 1, true), err.message)
    t.eq(pool:stats(), { size = 1, in_use = 0, open_and_available = 0, overflow = 0, open = 0 },
        "the timed-out connection was dropped, its slot freed")
    t.eq(c:whoami(), "pyserver", "the one slot serves the next call")
    t.eq(pool:stats().open, 1)
    -- an error raised inside the pool's function (a bad argument) keeps it whole too
    t.raises("", c.add, c, "not a number", 1)
    t.eq(pool:stats().in_use, 0)
end)

t.test("the server killed in the middle of a call; then refused, retried", function()
    local c, pool = client(VICTIM_EP, { timeout = "10 seconds" })
    t.eq(c:whoami(), "pyserver")
    runtime.spawn(function()
        runtime.sleep(0.3)
        os.execute("kill -KILL " .. env("VICTIM_PID"))
    end)
    local t0 = runtime.now()
    local err = t.raises("server closed the connection", c.sleep, c, 5)
    t.ok(runtime.now() - t0 < 3, "it did not wait for the timeout")
    t.eq(err.type, tc.UNKNOWN)
    t.eq(pool:stats().open, 0)
    t.eq(pool:stats().in_use, 0)
    -- (the dying process's listening socket may still complete a handshake
    -- for a moment after its connections closed)
    runtime.sleep(0.3)
    err = t.raises("connection refused", c.whoami, c)
    t.ok(err.message:find("(after 3 attempts)", 1, true), err.message)
    t.eq(err.type, tc.NOT_OPEN)
    local c1 = client(DEAD_EP, { max_connection_attempts = 1 })
    err = t.raises("connection refused", c1.whoami, c1)
    t.ok(not err.message:find("attempts", 1, true), err.message)
    t.eq(tc.pool_of(c1):stats().open, 0)
end)

t.test("a pooled connection the server closed is replaced, the call goes through", function()
    -- the Lua server closes connections idle for half a second
    local c, pool = client(LUA_EP, { max_connection_attempts = 2 })
    t.eq(c:whoami(), "thriftapp")
    runtime.sleep(1)
    t.eq(c:whoami(), "thriftapp")
    t.eq(pool:stats().open, 1)
    -- the same with the server's close not yet seen by the loop: the send finds it
    t.eq(c:whoami(), "thriftapp")
    os.execute("sleep 1") -- the loop does not run: the close waits in the socket
    t.eq(c:whoami(), "thriftapp")
    t.eq(pool:stats().open, 1)
end)

-- A caller with a Baseplate: calls from a server span.
local spans = {}
local bp = baseplate.Baseplate({
    ["baseplate.service_name"] = "driver",
    ["proxy.endpoint"] = PROXY_EP,
    ["py.endpoint"] = PY_EP,
    ["py.protocol"] = "compact",
})
bp:configure_context({ proxy = tc.ThriftClient(Test), py = tc.ThriftClient(Test) })
bp:register({ on_server_span_created = function(_, _, span)
    span:register({ on_child_span_created = function(_, child)
        local rec = { name = child.name, kind = child.kind, id = child.id, parent = child.parent_id }
        spans[#spans + 1] = rec
        child:register({ on_finish = function(_, err)
            rec.error = err and require("baseplate.span").error_class(err)
        end })
    end })
end })

t.test("client spans and the headers a call sends", function()
    spans = {}
    bp:server_context("caller", function(ctx)
        local h = ctx.py:headers()
        t.eq(h.Trace, ctx.span.trace_id)
        t.eq(h.Parent, ctx.span.id, "Parent: the caller's span")
        t.eq(h.Span, spans[1].id, "Span: the client span")
        t.ok(h.Span ~= ctx.span.id)
        t.eq(h["User-Agent"], "driver")
        t.eq(h["Deadline-Budget"], "1000")
        t.eq(spans[1].name, "py.headers")
        t.eq(spans[1].kind, "client")
        t.eq(spans[1].parent, ctx.span.id)
        t.raises("no such id", ctx.py.get, ctx.py, 3)
        t.eq(spans[2].name, "py.get")
        t.eq(spans[2].error, "NotFound", "the span fails with the exception's name")
        t.raises("told to", ctx.py.fail, ctx.py, "app")
        t.eq(spans[3].error, "TApplicationException")
    end)
end)

t.test("a trace crossing two hops: caller -> A (Lua) -> B (Lua)", function()
    spans = {}
    bp:server_context("caller", function(ctx)
        local edge = "edge\0bytes"
        require("baseplate.span").C.bp_span_set_edge_request(ctx.span.c, edge, #edge)
        local out = ctx.proxy:trace()
        local a, b = out:match("^(.-)|(.*)$")
        local a_trace, a_id, a_parent, a_method = a:match("^(%S+) (%S+) (%S+) (%S+)$")
        local b_trace, b_id, b_parent = b:match("^(%S+) (%S+) (%S+) trace$")
        t.eq(a_method, "trace")
        t.eq(a_trace, ctx.span.trace_id, "A continues the caller's trace")
        t.eq(a_id, spans[1].id, "A's server span takes the caller's client span ID")
        t.eq(a_parent, ctx.span.id, "... and the caller's span as its parent")
        t.eq(b_trace, ctx.span.trace_id, "B continues it too")
        t.ok(b_id ~= a_id and b_id ~= ctx.span.id, "B's span is new")
        t.eq(b_parent, a_id, "B's parent is A's server span")
        -- what A sent B
        local h = ctx.proxy:headers()
        t.eq(h["User-Agent"], "proxyapp")
        t.eq(h["Edge-Request"], edge, "the edge context goes along")
        t.eq(h.Trace, ctx.span.trace_id)
        -- the caller's budget (its client timeout, 1 s) caps A's 5 s
        local budget = ctx.proxy:budget()
        t.ok(budget > 0.5 and budget <= 1.0, "B saw a budget of " .. budget)
        t.eq(ctx.proxy:whoami(), "proxy>thriftapp")
        local err = t.raises("no such id", ctx.proxy.get, ctx.proxy, 9)
        t.eq(codec.struct_of(err), NotFound, "B's declared exception comes back through A")
    end)
end)

t.test("configuration errors name the key", function()
    t.raises("c.endpoint", tc.client_from_config, Test, {}, "c.")
    t.raises("c.protocol", tc.client_from_config, Test, { ["c.endpoint"] = PY_EP, ["c.protocol"] = "json" }, "c.")
    t.raises("c.size", tc.client_from_config, Test, { ["c.endpoint"] = PY_EP, ["c.size"] = "0" }, "c.")
    t.raises("expected a service", tc.ThriftClient, {})
end)

t.done()
