-- The Thrift codec (src/thrift/codec.c) seen from Lua: struct handles that
-- encode and decode values in the binary and compact protocols, message
-- envelopes and TApplicationException. Schemas normally come from
-- baseplate.thrift.idl; compile() takes the same descriptions by hand.
--
--   local bytes = handle:encode(value, "binary")      -- raises on a bad value
--   local value, next_pos = handle:decode(bytes, "compact", pos)  -- nil, err on bad input
--   local msg = codec.encode_message("get", codec.CALL, 7, args_handle, args, "binary")
--   local name, mtype, seqid, pos = codec.decode_message(msg, "binary")
local ffi = require("ffi")
local c = require("baseplate.thrift_c")

local M = {}

M.CALL, M.REPLY, M.EXCEPTION, M.ONEWAY = 1, 2, 3, 4

--- TApplicationException's types (Apache Thrift's numbering).
M.app_error = {
    UNKNOWN = 0, UNKNOWN_METHOD = 1, INVALID_MESSAGE_TYPE = 2, WRONG_METHOD_NAME = 3,
    BAD_SEQUENCE_ID = 4, MISSING_RESULT = 5, INTERNAL_ERROR = 6, PROTOCOL_ERROR = 7,
    INVALID_TRANSFORM = 8, INVALID_PROTOCOL = 9, UNSUPPORTED_CLIENT_TYPE = 10,
}

local protocols = { binary = 0, compact = 1 }

local function proto_id(p, level)
    local id = protocols[p or "binary"]
    if not id then error("unknown Thrift protocol " .. tostring(p) .. " (binary or compact)", level + 1) end
    return id
end

-- int64 values cross the C boundary through these two helpers: the Lua C
-- API cannot make cdata, so C calls box(ptr) to get one, and unbox(value,
-- ptr) to read one (false when the cdata is not an int64_t or uint64_t).
local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local i64p = ffi.typeof("int64_t *")
local cast, istype = ffi.cast, ffi.istype
c.set_int64_helpers(function(p)
    return cast(i64p, p)[0]
end, function(v, p)
    if istype(int64_t, v) or istype(uint64_t, v) then
        cast(i64p, p)[0] = v
        return true
    end
    return false
end)

local Struct = {}
Struct.__index = Struct

--- Encodes `value` (a table keyed by field name) and returns the bytes.
--- Raises an error naming the struct and field when the value does not fit.
function Struct:encode(value, protocol)
    return c.encode(self.codec, self.index, value, proto_id(protocol, 2))
end

--- Decodes one struct from `bytes` at `pos` (1 by default): the value and
--- the position after it, or nil and a message when the bytes are bad.
function Struct:decode(bytes, protocol, pos)
    return c.decode(self.codec, self.index, bytes, proto_id(protocol, 2), pos or 1)
end

-- Values made with :new know their struct: a raised exception value is
-- matched with a method's declared exceptions this way.
local instance_mts = setmetatable({}, { __mode = "k" })

local function instance_tostring(v)
    local mt = getmetatable(v)
    local msg = rawget(v, "message")
    return mt.__thrift.name .. (msg ~= nil and (": " .. tostring(msg)) or "")
end

--- A value of this struct: `fields` (a table keyed by field name, nil for
--- an empty one) marked as this struct's, so that error(Handle:new{…})
--- in a Thrift handler raises this declared exception, and
--- `Struct.of(value)` finds its struct again.
function Struct:new(fields)
    local mt = instance_mts[self]
    if not mt then
        mt = { __thrift = self, __tostring = instance_tostring }
        instance_mts[self] = mt
    end
    return setmetatable(fields or {}, mt)
end

--- The struct handle a value was made with (Struct:new), or nil.
function M.struct_of(value)
    if type(value) ~= "table" then return nil end
    local mt = getmetatable(value)
    return type(mt) == "table" and rawget(mt, "__thrift") or nil
end

local base = {}
for _, k in ipairs({ "bool", "byte", "i16", "i32", "i64", "double", "string", "binary" }) do
    base[k] = { kind = k }
end

--- The shared description of a base type ("i32", "binary", ...).
function M.base_type(name)
    return base[name] or error("unknown Thrift base type " .. tostring(name), 2)
end

--- Compiles struct descriptions (docs/thrift.md, "Schema") into C; returns
--- a table from each description to its handle.
function M.compile(descs)
    local ud = c.compile(descs)
    local handles = {}
    for i, d in ipairs(descs) do
        handles[d] = setmetatable({ codec = ud, index = i, name = d.name, kind = d.kind, fields = d.fields }, Struct)
    end
    return handles
end

--- A message: the envelope (name, type, seqid) followed by `value` encoded
--- as the struct `handle`.
function M.encode_message(name, mtype, seqid, handle, value, protocol)
    return c.encode_message(name, mtype, seqid, handle.codec, handle.index, value, proto_id(protocol, 2))
end

--- Reads a message envelope: name, type, seqid and the position of the body,
--- or nil and a message.
function M.decode_message(bytes, protocol, pos)
    return c.decode_message(bytes, proto_id(protocol, 2), pos or 1)
end

M.application_exception = M.compile({ {
    name = "TApplicationException", kind = "exception",
    fields = {
        { id = 1, name = "message", required = "optional", type = base.string },
        { id = 2, name = "type", required = "optional", type = base.i32 },
    },
} })

for _, h in pairs(M.application_exception) do M.application_exception = h end

return M
