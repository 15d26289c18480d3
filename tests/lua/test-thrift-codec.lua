-- The Thrift codec: IDL loading through Debian's thrift compiler
-- (baseplate.thrift.idl), encoding and decoding in the binary and compact
-- protocols (src/thrift/codec.c), hostile input, and interoperability with
-- Apache Thrift's Python library (python3-thrift) both ways.
local t = require("testlib")
local ffi = require("ffi")
local idl = require("baseplate.thrift.idl")
local codec = require("baseplate.thrift.codec")

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local IDL = here .. "/thrift/codec.thrift"
local schema = idl.load(IDL)
local PROTOS = { "binary", "compact" }

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function tmpdir()
    local p = io.popen("mktemp -d")
    local d = p:read("*l")
    p:close()
    return d
end

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end

local function bytes(n)
    local out = {}
    for i = 0, n - 1 do out[#out + 1] = string.char(i % 256) end
    return table.concat(out)
end

local function tree(depth)
    if depth == 0 then return { value = 0, children = {} } end
    return { value = depth, children = { tree(depth - 1), { value = -depth } } }
end

-- The samples of tests/lua/thrift/interop.py, as the codec's Lua values.
local I64_MIN = ffi.new("int64_t", 1) * 0 - 0x7fffffffffffffffLL - 1
local samples = {
    everything = { "Everything", {
        a_bool = true, a_byte = -3, an_i16 = -300, an_i32 = 2 ^ 31 - 1, an_i64 = I64_MIN, a_double = 3.25,
        a_string = "h\xc3\xa9llo \xe2\x9c\x93", a_binary = bytes(256), a_name = "n", a_color = 10,
        a_user = 9007199254740993LL, ints = { 1, -2, 3 }, names = { "only" }, by_id = { [7] = "seven" },
        path = { { x = 1, y = 2 }, { x = -3, y = 4 } }, buckets = { b = { 1, 2 } }, deep = { { { k = { 5LL } } }, {} },
        origin = { x = 0, y = 0 }, by_point = {}, blobs = { "\0\xff", "" }, kind = 5,
    } },
    sparse = { "Everything", { an_i32 = 1, a_bool = false, an_i64 = 0x7fffffffffffffffLL } },
    multi = { "Everything", { by_id = { "a", "b", "c" }, names = { "x", "y", "z" }, buckets = { p = {}, q = { 9 } } } },
    union = { "Value", { list_value = { { int_value = 1LL }, { str_value = "x" }, { list_value = {} } } } },
    tree = { "Tree", tree(6) },
    defaults = { "Defaults", { n = 7, s = "seven", opt_n = 8, req_n = 3, l = { 1, 2 }, c = 10, b = true, d = 1.5,
                               p = { x = 1, y = 2 } } },
}
local things = schema:service("Things")
local messages = {
    call = { "get", codec.CALL, 7, things.methods.get.args, { id = 1099511627776LL, name = "x" } },
    reply = { "get", codec.REPLY, -5, things.methods.get.result, { boom = { message = "bad", code = 42 } } },
    app_exception = { "nope", codec.EXCEPTION, 1, codec.application_exception,
                      { message = "unknown method nope", type = codec.app_error.UNKNOWN_METHOD } },
}

-- Sets arrive in the peer's order: compare them sorted.
local function normalise(name, v)
    if name == "multi" and v.names then table.sort(v.names) end
    return v
end

t.test("idl.load: includes, namespaces, enums, consts, typedefs", function()
    t.eq(schema.program, "codec")
    t.eq(schema.programs.codec.includes, { "shared" })
    t.eq(schema.programs.codec.namespaces.py, "codec")
    t.eq(schema.programs.shared.namespaces.lua, "shared")
    t.eq(schema:enum("Kind"), { ONE = 0, TWO = 1, FIVE = 5 })
    t.eq(schema:enum("shared.Color"), { RED = 1, GREEN = 2, BLUE = 10 })
    t.eq(schema:const("MAX_ITEMS"), 100)
    t.eq(schema:const("GREETING"), "hello")
    t.eq(schema:const("PRIMES"), { 2, 3, 5, 7 })
    t.eq(schema:const("WEIGHTS"), { a = 1, b = 2 })
    t.eq(schema:const("DEFAULT_COLOR"), 2)
    t.eq(schema.typedefs["codec.Name"].kind, "string")
    t.eq(schema.typedefs["shared.UserId"].kind, "i64")
    t.eq(schema.typedefs["codec.Buckets"].value.elem.kind, "i32")
    t.eq(schema.typedefs["codec.Path"].elem.struct.name, "shared.Point")
    t.raises("has no struct Nope", function() schema:struct("Nope") end)
end)

t.test("idl.load: structs, requiredness, defaults, unions, exceptions", function()
    local E = schema:struct("Everything")
    t.eq(#E.fields, 21)
    t.eq(E.fields[5].type.kind, "i64")
    t.eq(E.fields[8].type.kind, "binary")
    t.eq(E.fields[7].type.kind, "string")
    t.eq(E.fields[18].required, "optional")
    t.eq(E.fields[17].type.elem.elem.value.kind, "set")
    t.eq(E.fields[19].type.key.struct.name, "shared.Point")
    local D = schema:struct("Defaults")
    t.eq(D.fields[4].required, "required")
    t.eq(D.fields[1].required, "default")
    t.eq(D.fields[9].default, { x = 1, y = 2 })
    t.eq(schema:struct("Value").kind, "union")
    t.eq(schema:struct("Boom").kind, "exception")
    t.eq(schema:struct("shared.NotFound").kind, "exception")
    t.eq(schema:struct("Tree").fields[2].type.elem.struct.name, "codec.Tree")
end)

t.test("idl.load: services, extends, oneway, args and results", function()
    local base = schema:service("shared.Base")
    t.ok(things.extends == base, "Things extends shared.Base")
    t.ok(things.methods.ping and things.methods.echo_point, "inherited methods")
    t.ok(things.methods.ping == base.methods.ping)
    t.eq(things.methods.fire.oneway, true)
    t.eq(things.methods.fire.result, nil)
    t.eq(things.methods.get.oneway, false)
    local get = things.methods.get
    t.eq(get.args.fields[1].name, "id")
    t.eq(get.args.fields[2].type.kind, "string")
    t.eq(get.result.fields[1].id, 0)
    t.eq(get.result.fields[1].name, "success")
    t.eq(get.result.fields[3].type.struct.name, "shared.NotFound")
    t.eq(#get.exceptions, 2)
    t.eq(#things.methods.put.result.fields, 0)
    t.eq(things.methods.put.args.fields[1].required, "required")
end)

t.test("idl.load: an invalid IDL, a missing file, a missing compiler", function()
    local dir = tmpdir()
    local f = io.open(dir .. "/bad.thrift", "w")
    f:write("struct Broken {\n  1: i32 x\n  2: nosuchtype y\n}\n")
    f:close()
    local err = t.raises("bad.thrift", idl.load, dir .. "/bad.thrift")
    t.ok(tostring(err):find("nosuchtype", 1, true), "the compiler's message: " .. tostring(err))
    t.raises("missing.thrift", idl.load, dir .. "/missing.thrift")
    f = io.open(dir .. "/keys.thrift", "w")
    f:write('struct P { 1: i32 x }\nconst map<P, i32> MP = {{"x": 1}: 3}\n')
    f:close()
    t.raises("a constant map with non-scalar keys cannot be read", idl.load, dir .. "/keys.thrift")
    local saved = idl.compiler
    idl.compiler = dir .. "/no-such-thrift"
    err = t.raises("thrift-compiler", idl.load, IDL)
    idl.compiler = saved
    t.ok(tostring(err):find("codec.thrift", 1, true), tostring(err))
    -- Includes found through include_dirs.
    os.execute("mkdir -p " .. dir .. "/inc")
    f = io.open(dir .. "/inc/lib.thrift", "w")
    f:write("struct L { 1: i32 v }\n")
    f:close()
    f = io.open(dir .. "/top.thrift", "w")
    f:write('include "lib.thrift"\nstruct Top { 1: lib.L l }\n')
    f:close()
    t.raises("lib.thrift", idl.load, dir .. "/top.thrift")
    local s = idl.load(dir .. "/top.thrift", { dir .. "/inc" })
    t.eq(s:struct("Top"):decode(s:struct("Top"):encode({ l = { v = 4 } })), { l = { v = 4 } })
    os.execute("rm -rf " .. shell_quote(dir))
end)

t.test("round trips, both protocols", function()
    for name, sample in pairs(samples) do
        local h = schema:struct(sample[1])
        for _, p in ipairs(PROTOS) do
            local b = h:encode(sample[2], p)
            local v, pos = h:decode(b, p)
            t.eq(v and normalise(name, v), sample[2], name .. " " .. p .. " (" .. tostring(pos) .. ")")
            t.eq(pos, #b + 1)
        end
    end
end)

t.test("maps with struct keys", function()
    local h = schema:struct("Everything")
    for _, p in ipairs(PROTOS) do
        local v = h:decode(h:encode({ by_point = { [{ x = 1, y = 2 }] = "a", [{ x = 3, y = 4 }] = "b" } }, p), p)
        local got = {}
        for k, s in pairs(v.by_point) do got[#got + 1] = k.x .. "," .. k.y .. "=" .. s end
        table.sort(got)
        t.eq(got, { "1,2=a", "3,4=b" }, p)
        t.raises("codec.Everything.by_point: expected a table (shared.Point), got number", h.encode, h, { by_point = { [1] = "x" } }, p)
    end
end)

t.test("decode at a position, several values in one string", function()
    local P = schema:struct("shared.Point")
    for _, p in ipairs(PROTOS) do
        local s = "xx" .. P:encode({ x = 1, y = 2 }, p) .. P:encode({ x = 3, y = 4 }, p)
        local a, pos = P:decode(s, p, 3)
        local b, pos2 = P:decode(s, p, pos)
        t.eq({ a, b, pos2 }, { { x = 1, y = 2 }, { x = 3, y = 4 }, #s + 1 })
    end
end)

t.test("i64: lossless both ways; numbers must be exact integers", function()
    local h = schema:struct("Everything")
    for _, p in ipairs(PROTOS) do
        for _, v in ipairs({ 0LL, -1LL, 9007199254740993LL, -9007199254740993LL, 0x7fffffffffffffffLL, I64_MIN }) do
            local got = h:decode(h:encode({ an_i64 = v }, p), p)
            t.ok(ffi.istype("int64_t", got.an_i64), "an int64_t cdata")
            t.ok(got.an_i64 == v, p .. " " .. tostring(v) .. " came back as " .. tostring(got.an_i64))
        end
        t.ok(h:decode(h:encode({ an_i64 = 2 ^ 53 }, p), p).an_i64 == 9007199254740992LL)
        t.ok(h:decode(h:encode({ an_i64 = -2 ^ 63 }, p), p).an_i64 == I64_MIN)
        t.ok(h:decode(h:encode({ an_i64 = 18446744073709551615ULL }, p), p).an_i64 == -1LL, "uint64 wraps")
    end
    t.raises("codec.Everything.an_i64: 1.5 is not an i64", h.encode, h, { an_i64 = 1.5 })
    t.raises("is not an i64", h.encode, h, { an_i64 = 2 ^ 63 })
    t.raises("expected an i64, got cdata", h.encode, h, { an_i64 = ffi.new("int32_t[1]") })
    t.raises("expected an i64, got string", h.encode, h, { an_i64 = "1" })
end)

t.test("encode: values that do not fit the schema name the struct and field", function()
    local h = schema:struct("Everything")
    t.raises("codec.Everything.an_i32: 2147483648 is not an i32", h.encode, h, { an_i32 = 2 ^ 31 })
    t.raises("-129 is not an i8", h.encode, h, { a_byte = -129 })
    t.raises("codec.Everything.an_i16: 40000 is not an i16", h.encode, h, { an_i16 = 40000 })
    t.raises("a_bool: expected a boolean, got number", h.encode, h, { a_bool = 1 })
    t.raises("a_double: expected a number, got string", h.encode, h, { a_double = "1" })
    t.raises("a_string: expected a string, got number", h.encode, h, { a_string = 5 })
    t.raises("codec.Everything.ints: expected an i32, got string", h.encode, h, { ints = { 1, "x" } })
    t.raises("ints: expected a table", h.encode, h, { ints = 5 })
    t.raises("shared.Point.y: required field is missing", h.encode, h, { path = { { x = 1 } } })
    t.raises("by_id: 1.5 is not an i32", h.encode, h, { by_id = { [1.5] = "x" } })
    t.raises("codec.Everything: expected a table, got string", h.encode, h, "x")
    local V = schema:struct("Value")
    t.raises("codec.Value: a union needs exactly one field set, not 0", V.encode, V, {})
    t.raises("not 2", V.encode, V, { int_value = 1, str_value = "a" })
    t.raises("unknown Thrift protocol", h.encode, h, {}, "json")
    -- Optional fields are written only when set; fields with defaults always.
    local D = schema:struct("Defaults")
    local v = D:decode(D:encode({ req_n = 1 }))
    t.eq(v, { n = 7, s = "seven", opt_n = 8, req_n = 1, l = { 1, 2 }, c = 10, b = true, d = 1.5, p = { x = 1, y = 2 } })
    t.ok(#D:encode({ req_n = 1, opt_n = 8 }) == #D:encode({ req_n = 1 }) + 7, "opt_n written only when set")
    -- A decoded default is a copy of its own.
    v.l[1] = 99
    t.eq(D:decode(D:encode({ req_n = 1 })).l, { 1, 2 })
end)

-- A hand-made schema: the same struct id space with more fields, for
-- unknown fields and wrong wire types.
local b = codec.base_type
local narrow = { name = "Narrow", kind = "struct", fields = {
    { id = 2, name = "keep", type = b("i32") },
    { id = 4, name = "req", required = "required", type = b("string") },
} }
local inner = { name = "Inner", kind = "struct", fields = { { id = 1, name = "s", type = b("string") } } }
local wide = { name = "Wide", kind = "struct", fields = {
    { id = -3, name = "neg", type = b("double") },
    { id = 1, name = "b", type = b("bool") },
    { id = 2, name = "keep", type = b("i32") },
    { id = 3, name = "deep", type = { kind = "list", elem = { kind = "map", key = b("string"),
        value = { kind = "set", elem = { kind = "struct", struct = inner } } } } },
    { id = 4, name = "req", type = b("string") },
    { id = 5, name = "x8", type = b("byte") },
    { id = 6, name = "x16", type = b("i16") },
    { id = 7, name = "x64", type = b("i64") },
    { id = 40, name = "far", type = { kind = "map", key = b("i64"), value = { kind = "list", elem = b("bool") } } },
    { id = 300, name = "bin", type = b("binary") },
} }
local wrong = { name = "Wrong", kind = "struct", fields = {
    { id = 2, name = "keep", type = b("string") },
    { id = 4, name = "req", type = b("string") },
} }
local hand = codec.compile({ narrow, wide, wrong, inner })
local Narrow, Wide, Wrong = hand[narrow], hand[wide], hand[wrong]

t.test("decode: unknown fields of every wire type are skipped", function()
    local w = { neg = -1.5, b = true, keep = 7, req = "r", x8 = 1, x16 = -2, x64 = 3LL, bin = "\0\1",
                deep = { { a = { { s = "1" }, {} } }, {} }, far = { [5LL] = { true, false } } }
    for _, p in ipairs(PROTOS) do
        local bytes_ = Wide:encode(w, p)
        t.eq(Narrow:decode(bytes_, p), { keep = 7, req = "r" }, p)
        local back = Wide:decode(bytes_, p)
        t.eq(back.deep, w.deep, p)
        t.eq(back.bin, "\0\1")
        for k, v in pairs(back.far) do t.ok(k == 5LL and v[1] == true and v[2] == false, p) end
    end
end)

t.test("decode: a known field of the wrong wire type is skipped, then required fields are enforced", function()
    for _, p in ipairs(PROTOS) do
        t.eq(Narrow:decode(Wrong:encode({ keep = "str", req = "r" }, p), p), { req = "r" })
        local v, err = Narrow:decode(Wrong:encode({ keep = "str" }, p), p)
        t.eq(v, nil)
        t.eq(err, "Narrow: required field req is missing")
        v, err = schema:struct("Value"):decode(Wide:encode({}, p), p)
        t.eq(err, "codec.Value: a union needs exactly one field set, not 0")
    end
end)

t.test("hostile: every truncation of a valid encoding is a clean error", function()
    local h = schema:struct("Everything")
    for _, p in ipairs(PROTOS) do
        local full = h:encode(samples.everything[2], p)
        for n = 0, #full - 1 do
            local v, err = h:decode(full:sub(1, n), p)
            t.eq(v, nil, p .. " cut at " .. n)
            t.ok(type(err) == "string" and err ~= "", "a message")
        end
    end
end)

-- Binary protocol building blocks.
local function be32(n) return string.char(bit.band(bit.rshift(n, 24), 255), bit.band(bit.rshift(n, 16), 255),
                                          bit.band(bit.rshift(n, 8), 255), bit.band(n, 255)) end
local function bfield(ty, id) return string.char(ty, 0, id) end

t.test("hostile: negative lengths, huge declared sizes, bad wire types", function()
    local h = schema:struct("Everything")
    local function bad(bytes_, want, proto)
        local v, err = h:decode(bytes_, proto or "binary")
        t.eq(v, nil, want)
        t.ok(err and err:find(want, 1, true), "want " .. want .. ", got " .. tostring(err))
    end
    bad(bfield(11, 7) .. be32(-1), "negative string length -1")
    bad(bfield(11, 7) .. be32(0x7fffffff) .. "abc", "string length 2147483647 exceeds the 3 bytes left")
    bad(bfield(15, 12) .. "\8" .. be32(1000000000) .. "\0\0\0\1", "list size 1000000000 exceeds")
    bad(bfield(15, 12) .. "\8" .. be32(-5), "negative list size")
    bad(bfield(13, 14) .. "\8\11" .. be32(0x40000000), "map size 1073741824 exceeds")
    bad(bfield(15, 12) .. "\11" .. be32(1) .. be32(0), "elements of wire type 11 where 8 was expected")
    bad(bfield(7, 1) .. "\0", "unknown wire type 7")
    bad(bfield(15, 99) .. "\1" .. be32(0), "unknown wire type 1")
    bad(bfield(11, 99) .. be32(-7), "negative string length")
    bad("\1", "unknown wire type 1")
    bad("", "truncated input")
    bad(bfield(6, 1) .. "\0", "truncated input")
    -- compact: varints that never end, or are too long for their type
    bad("\x58" .. string.rep("\xff", 20), "varint too long", "compact")
    bad("\x78\xff\xff\xff\xff\x0f", "string length 4294967295 too large", "compact")
    bad("\x78\xff\xff\xff\xff\x07", "string length 2147483647 exceeds the 0 bytes left", "compact")
    bad("\x48\xff\xff\xff\xff\x7f", "string length", "compact")
    bad("\x45\xff\xff\xff\xff\x7f", "i32 out of range", "compact")
    bad("\x0d", "unknown wire type 13", "compact")
    bad("\xc9\xf5\xff\xff\xff\x07", "list size", "compact")
    bad("\xe9\xf5" .. "\xff\xff\xff\xff\x07", "list size", "compact")
    bad("\xeb\xff\xff\xff\xff\x07\x58", "map size", "compact")
    -- A double NaN as a map key cannot be a Lua key.
    local nan_key = { name = "M", kind = "struct", fields = { { id = 1, name = "m", type = { kind = "map",
        key = b("double"), value = b("bool") } } } }
    local M = codec.compile({ nan_key })[nan_key]
    local v, err = M:decode(bfield(13, 1) .. "\4\2" .. be32(1) .. "\x7f\xf8\0\0\0\0\0\0\1\0", "binary")
    t.eq({ v, err }, { nil, "M: a map key is NaN" })
end)

t.test("hostile: nesting 10,000 deep is refused at depth 64, known or skipped", function()
    local T = schema:struct("Tree")
    for _, p in ipairs(PROTOS) do
        -- Tree{children=[Tree{children=[...]}]}: a struct and a list per level
        local level = p == "binary" and (bfield(15, 2) .. "\12" .. be32(1)) or "\x29\x1c"
        local s = string.rep(level, 10000) .. string.rep("\0", 10001)
        local v, err = T:decode(s, p)
        t.eq(v, nil)
        t.ok(err:find("nested deeper than 64", 1, true), err)
        -- The same under an unknown field id: the skipper has the limit too.
        local unknown = p == "binary" and (bfield(15, 9) .. "\12" .. be32(1)) or "\x99\x1c"
        v, err = T:decode(string.rep(unknown, 10000), p)
        t.ok(v == nil and err:find("nested deeper than 64", 1, true), err)
        -- 30 deep is fine.
        local tr = { value = 0 }
        for _ = 1, 30 do tr = { value = 1, children = { tr } } end
        t.eq(T:decode(T:encode(tr, p), p), tr)
    end
    local tr = { value = 0 }
    for _ = 1, 100 do tr = { value = 1, children = { tr } } end
    t.raises("nested deeper than 64", T.encode, T, tr)
end)

t.test("hostile: random and mutated bytes never crash", function()
    local h = schema:struct("Everything")
    math.randomseed(12)
    for _, p in ipairs(PROTOS) do
        local full = h:encode(samples.everything[2], p)
        for _ = 1, 3000 do
            local s = {}
            for i = 1, #full do s[i] = full:sub(i, i) end
            for _ = 1, math.random(1, 4) do s[math.random(1, #s)] = string.char(math.random(0, 255)) end
            local v, err = h:decode(table.concat(s), p)
            t.ok(v ~= nil or type(err) == "string")
        end
        for _ = 1, 2000 do
            local s = {}
            for i = 1, math.random(0, 64) do s[i] = string.char(math.random(0, 255)) end
            local v, err = h:decode(table.concat(s), p)
            t.ok(v ~= nil or type(err) == "string")
            local name
            name, err = codec.decode_message(table.concat(s), p)
            t.ok(name ~= nil or type(err) == "string")
        end
    end
end)

t.test("messages: envelopes both ways, strict and old binary headers", function()
    for _, p in ipairs(PROTOS) do
        for name, m in pairs(messages) do
            local s = codec.encode_message(m[1], m[2], m[3], m[4], m[5], p)
            local mname, mtype, seqid, pos = codec.decode_message(s, p)
            t.eq({ mname, mtype, seqid }, { m[1], m[2], m[3] }, name)
            t.eq(m[4]:decode(s, p, pos), m[5], name)
        end
    end
    -- The old binary header: name length, name, type byte, seqid.
    local name, mtype, seqid, pos = codec.decode_message(be32(3) .. "abc\1" .. be32(9) .. "\0", "binary")
    t.eq({ name, mtype, seqid, pos }, { "abc", 1, 9, 13 })
    local v, err = codec.decode_message(be32(0x80020001) .. be32(0), "binary")
    t.eq({ v, err }, { nil, "message: bad version 0x80020001" })
    v, err = codec.decode_message(be32(0x80010009) .. be32(0) .. be32(1), "binary")
    t.eq({ v, err }, { nil, "message: invalid message type 9" })
    v, err = codec.decode_message("\x82\x02\x00\x00", "compact")
    t.eq({ v, err }, { nil, "message: not a compact protocol message (0x8202)" })
    v, err = codec.decode_message(be32(0x80010001) .. be32(-1), "binary")
    t.eq({ v, err }, { nil, "message: negative name length -1" })
    t.raises("message type must be 1..4", codec.encode_message, "x", 5, 1, messages.call[4], {}, "binary")
    t.raises("seqid must be an i32", codec.encode_message, "x", 1, 2 ^ 31, messages.call[4], {}, "binary")
end)

t.test("lifetimes: schemas collected while values and other schemas live on", function()
    local saved_pause, saved_mul = collectgarbage("setpause", 1), collectgarbage("setstepmul", 1000)
    local keep = {}
    for i = 1, 200 do
        local desc = { name = "S" .. i, kind = "struct", fields = {
            { id = 1, name = "l", type = { kind = "list", elem = b("string") }, default = { "d" .. i } },
            { id = 2, name = "n", type = b("i64"), default = ffi.new("int64_t", i) },
        } }
        local h = codec.compile({ desc })[desc]
        local v = h:decode(h:encode({}, i % 2 == 0 and "binary" or "compact"), i % 2 == 0 and "binary" or "compact")
        t.eq(v.l, { "d" .. i })
        t.ok(v.n == i)
        if i % 10 == 0 then keep[#keep + 1] = { h = h, v = v, i = i } end
        desc = nil
        collectgarbage("step")
    end
    collectgarbage()
    for _, k in ipairs(keep) do
        t.eq(k.h:decode(k.h:encode({ l = { "x" } })).l, { "x" })
        t.eq(k.v.l, { "d" .. k.i })
    end
    -- The C side keeps names of its own: messages survive the descriptions.
    local c = require("baseplate.thrift_c")
    local ud = c.compile({ { name = "Temp" .. ("x"):rep(40), kind = "struct", fields = {
        { id = 1, name = "field" .. ("y"):rep(40), required = "required", type = b("i32") } } } })
    collectgarbage()
    local junk = {}
    for i = 1, 20000 do junk[i] = ("z"):rep(45) .. i end
    junk = nil
    collectgarbage()
    t.raises("Temp" .. ("x"):rep(40) .. ".field" .. ("y"):rep(40) .. ": required field is missing", c.encode, ud, 1, {}, 0)
    local v, err = c.decode(ud, 1, "\0", 0, 1)
    t.eq({ v, err }, { nil, "Temp" .. ("x"):rep(40) .. ": required field field" .. ("y"):rep(40) .. " is missing" })
    collectgarbage("setpause", saved_pause)
    collectgarbage("setstepmul", saved_mul)
end)

-- Interoperability with python3-thrift: the Python interpreter Debian's
-- package installs into.
local function python()
    for _, py in ipairs({ "/usr/bin/python3", "python3" }) do
        if os.execute(py .. " -c 'import thrift' >/dev/null 2>&1") == 0 then return py end
    end
    error("no python3 with the thrift module (Debian's python3-thrift; scripts/install-deps)")
end

t.test("interop: python3-thrift encodes, the codec decodes (binary and compact)", function()
    local py = python()
    local dir = tmpdir()
    t.ok(os.execute(string.format("thrift -r --gen py -out %s %s >/dev/null 2>&1", shell_quote(dir), shell_quote(IDL))) == 0,
        "thrift --gen py")
    local p = io.popen(string.format("%s %s %s write", py, shell_quote(here .. "/thrift/interop.py"), shell_quote(dir)))
    local seen = 0
    for line in p:lines() do
        local name, proto, h = line:match("^(%S+) (%S+) (%x*)$")
        local data = unhex(h)
        if samples[name] then
            local handle = schema:struct(samples[name][1])
            local v, err = handle:decode(data, proto)
            t.eq(v and normalise(name, v), samples[name][2], name .. " " .. proto .. " " .. tostring(err))
            if name ~= "multi" then t.eq(hex(handle:encode(samples[name][2], proto)), h, name .. " " .. proto .. " bytes") end
        else
            local m = messages[name]
            local mname, mtype, seqid, pos = codec.decode_message(data, proto)
            t.eq({ mname, mtype, seqid }, { m[1], m[2], m[3] }, name .. " " .. proto)
            t.eq(m[4]:decode(data, proto, pos), m[5], name .. " " .. proto)
            t.eq(hex(codec.encode_message(m[1], m[2], m[3], m[4], m[5], proto)), h, name .. " " .. proto .. " bytes")
        end
        seen = seen + 1
    end
    p:close()
    t.eq(seen, 18, "samples read from python")
    os.execute("rm -rf " .. shell_quote(dir))
end)

t.test("interop: the codec encodes, python3-thrift decodes and compares", function()
    local py = python()
    local dir = tmpdir()
    t.ok(os.execute(string.format("thrift -r --gen py -out %s %s >/dev/null 2>&1", shell_quote(dir), shell_quote(IDL))) == 0)
    local input = dir .. "/ours.txt"
    local f = io.open(input, "w")
    for _, proto in ipairs(PROTOS) do
        for name, s in pairs(samples) do
            f:write(name, " ", proto, " ", hex(schema:struct(s[1]):encode(s[2], proto)), "\n")
        end
        for name, m in pairs(messages) do
            f:write(name, " ", proto, " ", hex(codec.encode_message(m[1], m[2], m[3], m[4], m[5], proto)), "\n")
        end
    end
    f:close()
    local p = io.popen(string.format("%s %s %s read < %s 2>&1", py, shell_quote(here .. "/thrift/interop.py"),
        shell_quote(dir), shell_quote(input)))
    local oks, out = 0, {}
    for line in p:lines() do
        if line:match("^ok ") then oks = oks + 1 else out[#out + 1] = line end
    end
    p:close()
    os.execute("rm -rf " .. shell_quote(dir))
    t.eq(out, {}, "python's verdicts")
    t.eq(oks, 18)
end)

t.done()
