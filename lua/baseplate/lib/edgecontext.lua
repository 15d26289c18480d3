-- The edge context hook, as Baseplate.py's baseplate.lib.edgecontext
-- (docs/lib-edgecontext.md):
--
--   local edgecontext = require("baseplate.lib.edgecontext")
--   local Factory = edgecontext.EdgeContextFactory:extend()
--   function Factory:from_upstream(raw) return MyEdgeContext.parse(raw) end
--   bp:set_edge_context_factory(Factory.new())
--   -- in a handler (HTTP request or Thrift context):
--   local user = request.edge_context.user   -- parsed on first access
--
-- A service at the edge turns what it knows of the client into bytes that
-- travel with every call: `X-Edge-Request` (base64) over HTTP,
-- `Edge-Request` (the bytes themselves) over Thrift. The server span keeps
-- the raw bytes (`context.raw_edge_context`); the Baseplate's factory turns
-- them into a typed object (`context.edge_context`) the first time a
-- handler asks; the clients send the raw bytes on, unchanged.
local span_mod = require("baseplate.span")

local type, setmetatable, rawset, error = type, setmetatable, rawset, error

local M = {}

local EdgeContextFactory = {}
EdgeContextFactory.__index = EdgeContextFactory
M.EdgeContextFactory = EdgeContextFactory

--- The abstract factory: from_upstream(self, header_value) parses the raw
--- bytes of an inbound request's edge context (nil when it has none) and
--- returns the typed edge context. This one raises.
function EdgeContextFactory.from_upstream()
    error("EdgeContextFactory:from_upstream is not implemented", 2)
end

--- A subclass: local F = EdgeContextFactory:extend(); function F:from_upstream(raw) … end;
--- F.new(fields) makes one.
function EdgeContextFactory:extend()
    local cls = setmetatable({}, { __index = self })
    cls.__index = cls
    function cls.new(fields) return setmetatable(fields or {}, cls) end
    return cls
end

function EdgeContextFactory.new(fields) return setmetatable(fields or {}, EdgeContextFactory) end

--- Give a request a new edge context (a service at the edge, having
--- authenticated its client): `raw` (a string of bytes) becomes the
--- context's raw_edge_context, what its clients send on, and the source
--- of its edge_context (parsed again on next access).
function M.attach(context, raw)
    if type(context) ~= "table" then error("edgecontext.attach: expected a request context", 2) end
    if type(raw) ~= "string" or raw == "" then
        error("edgecontext.attach: expected the edge context's bytes (a non-empty string)", 2)
    end
    local span = context.span
    if span == nil then error("edgecontext.attach: the context has no server span", 2) end
    local rc = span_mod.C.bp_span_set_edge_request(span.c, raw, #raw)
    if rc ~= 0 then error("edgecontext.attach: out of memory", 2) end
    rawset(context, "raw_edge_context", raw)
    rawset(context, "edge_context", nil)
end

return M
