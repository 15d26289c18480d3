-- baseplate.lib.edgecontext: the EdgeContextFactory hook. A request's
-- X-Edge-Request (HTTP, base64) or Edge-Request (Thrift, the bytes) becomes
-- context.raw_edge_context and, parsed on first access by the Baseplate's
-- factory, context.edge_context; an HTTP service's Thrift calls pass the
-- bytes on unchanged. Through the real HTTP and Thrift servers and the real
-- Thrift client (baseplate.testing's socket pairs).
local t = require("testlib")
local baseplate = require("baseplate")
local http = require("baseplate.http")
local thrift = require("baseplate.thrift")
local thrift_client = require("baseplate.clients.thrift")
local testing = require("baseplate.testing")
local edgecontext = require("baseplate.lib.edgecontext")

-- Bytes a real edge context could hold: NULs, high bytes, no text.
local EDGE = "\0\1edge\255\254\n ctx\0"
local EDGE_B64 = "AAFlZGdl//4KIGN0eAA=" -- base64.b64encode(EDGE), by CPython

-- A factory that counts its parses and makes a typed context of the bytes.
local Factory = edgecontext.EdgeContextFactory:extend()
function Factory:from_upstream(raw)
    self.parses = self.parses + 1
    return { raw = raw, user = raw and raw:match("edge") and "t2_user" or nil }
end

-- The downstream Thrift service: reports what it was given.
local schema = thrift.load("../integration/apps/thrift/testsvc.thrift")
local service = schema:service("Test")
local thrift_bp = baseplate.Baseplate({})
local thrift_factory = Factory.new({ parses = 0 })
thrift_bp:set_edge_context_factory(thrift_factory)
local seen = {}
local handler = setmetatable({}, { __index = function() return function() end end })
function handler.trace(context)
    seen.raw = context.raw_edge_context
    seen.user = context.edge_context and context.edge_context.user
    return "ok"
end
function handler.add(_, a, b) return a + b end -- (never looks at the edge context)
local processor = thrift.processor(service, handler, { baseplate = thrift_bp, trust_trace_headers = true })
local downstream, stop_thrift = testing.thrift_client(processor, service)
local downstream_pool = rawget(downstream, "_pool")

-- The HTTP service in front: reports its edge context and calls downstream.
local http_bp = baseplate.Baseplate({})
local http_factory = Factory.new({ parses = 0 })
http_bp:set_edge_context_factory(http_factory)
local app = http.app({}, { baseplate = http_bp, trust_trace_headers = true })
app:get("edge", "/edge", function(request)
    local ctx = request.edge_context
    local raw = request.raw_edge_context
    return { raw_b64 = raw and require("baseplate.clients.http")._base64(raw) or "none",
        user = ctx.user or "none", parses = http_factory.parses }
end)
app:get("relay", "/relay", function(request)
    local c = thrift_client.client(service, downstream_pool, "downstream", request.span)
    seen = {}
    c:trace()
    return { parses = http_factory.parses }
end)
app:get("attach", "/attach", function(request)
    edgecontext.attach(request, "new\0context")
    local user = request.edge_context.raw
    local c = thrift_client.client(service, downstream_pool, "downstream", request.span)
    seen = {}
    c:trace()
    return { raw = user == "new\0context" }
end)
local client = testing.client(app)

t.test("HTTP: X-Edge-Request's bytes, and the typed context parsed on first access", function()
    http_factory.parses = 0
    local res = client:get("/edge", { headers = { ["X-Edge-Request"] = EDGE_B64 } })
    t.eq(res.status, 200)
    t.eq(res:json().raw_b64, EDGE_B64, "raw_edge_context is the decoded bytes")
    t.eq(res:json().user, "t2_user")
    t.eq(res:json().parses, 1, "parsed once, when the handler asked")
end)

t.test("HTTP → Thrift: the bytes reach the Thrift service unchanged", function()
    http_factory.parses, thrift_factory.parses = 0, 0
    local res = client:get("/relay", { headers = { ["X-Edge-Request"] = EDGE_B64 } })
    t.eq(res.status, 200)
    t.eq(seen.raw, EDGE, "Edge-Request carries the raw bytes, not the base64")
    t.eq(seen.user, "t2_user", "the Thrift service's factory parsed them")
    t.eq(res:json().parses, 0, "the HTTP service never parsed: lazy")
    t.eq(thrift_factory.parses, 1)
end)

t.test("Thrift: lazy; without an edge context from_upstream gets nil", function()
    thrift_factory.parses = 0
    t.eq(downstream:add(1, 2), 3LL)
    t.eq(thrift_factory.parses, 0, "a handler that does not look costs nothing")
    seen = {}
    downstream:trace() -- (no span: no edge context sent)
    t.eq(seen.raw, nil)
    t.eq(seen.user, nil)
    t.eq(thrift_factory.parses, 1, "from_upstream(nil), as Baseplate.py's")
end)

t.test("HTTP: a value that is not base64 is dropped; no header, no bytes", function()
    http_factory.parses = 0
    local res = client:get("/edge", { headers = { ["X-Edge-Request"] = "not base64!" } })
    t.eq(res.status, 200)
    t.eq(res:json().raw_b64, "none")
    t.eq(res:json().user, "none")
    res = client:get("/edge")
    t.eq(res:json().raw_b64, "none")
end)

t.test("attach: a service at the edge gives the request a new edge context, sent on", function()
    local res = client:get("/attach")
    t.eq(res.status, 200)
    t.eq(res:json().raw, true, "edge_context parsed from the attached bytes")
    t.eq(seen.raw, "new\0context")
end)

t.test("untrusted HTTP headers: no edge context", function()
    local plain_bp = baseplate.Baseplate({})
    plain_bp:set_edge_context_factory(function(raw) return { raw = raw } end)
    local app2 = http.app({}, { baseplate = plain_bp })
    app2:get("edge", "/edge", function(request)
        return { raw = request.raw_edge_context or "none", fn = request.edge_context.raw or "none" }
    end)
    local c2 = testing.client(app2)
    local res = c2:get("/edge", { headers = { ["X-Edge-Request"] = EDGE_B64 } })
    t.eq(res:json(), { raw = "none", fn = "none" })
    c2:close()
end)

t.test("the factory is checked; the abstract one raises", function()
    t.raises("expected a table with from_upstream, or a function", http_bp.set_edge_context_factory, http_bp, 42)
    t.raises("not implemented", edgecontext.EdgeContextFactory.new().from_upstream, nil, "x")
    t.raises("expected the edge context's bytes", edgecontext.attach, {}, "")
end)

client:close()
stop_thrift()
t.done()
