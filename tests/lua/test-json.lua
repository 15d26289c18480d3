-- The core's JSON encoder for response bodies (src/json.c) writes exactly
-- what cjson.encode writes (default settings), and declines what it does not
-- encode the same way, for cjson to decide.
local t = require("testlib")
local cjson = require("cjson")
local json_c = require("baseplate.json_c")

local enc = json_c.encode_string

-- What the core writes, or cjson's result when the core declines.
local function same_as_cjson(v, what)
    local ok, want = pcall(cjson.encode, v)
    local got = enc(v)
    if not ok then
        t.eq(got, nil, what .. ": cjson raises (" .. tostring(want) .. "), so the core must decline")
    elseif got ~= nil then
        t.eq(got, want, what)
    end
    return got
end

t.test("strings: every byte escaped as cjson escapes it", function()
    for b = 0, 255 do
        local s = string.char(b)
        t.eq(enc(s), cjson.encode(s), "byte " .. b)
        t.eq(enc("a" .. s .. "bc" .. s), cjson.encode("a" .. s .. "bc" .. s), "byte " .. b .. " inside")
    end
    t.eq(enc(""), '""')
    t.eq(enc("caf\xc3\xa9 / \"q\" \\"), cjson.encode("caf\xc3\xa9 / \"q\" \\"))
end)

t.test("numbers as %.14g", function()
    for _, v in ipairs({ 0, 1, -1, 42, -7, 1e13, 99999999999999, 1e14, -1e14, 123456789012345, 1e15, 2 ^ 53,
                         0.5, -0.5, 0.1, 1 / 3, -2 / 3, 3.14159265358979, 1e-5, 1.5e-300, 1e300, -0.0,
                         4503599627370497, 0.1 + 0.2, 1e21, 5e-324 }) do
        t.eq(enc(v), cjson.encode(v), "number " .. string.format("%.17g", v))
    end
end)

t.test("scalars, null and empty tables", function()
    t.eq(enc(true), "true")
    t.eq(enc(false), "false")
    t.eq(enc(nil), "null")
    t.eq(enc(cjson.null), "null")
    t.eq(enc({}), cjson.encode({}))
    t.eq(enc({ Hello = "World" }), '{"Hello":"World"}')
end)

t.test("arrays, holes and mixed keys as cjson sees them", function()
    same_as_cjson({ 1, 2, 3 }, "array")
    same_as_cjson({ 1, nil, 3 }, "a hole")
    same_as_cjson({ [1] = "a", [3] = "c" }, "sparse but allowed")
    same_as_cjson({ [1] = 1, [10] = 2 }, "max 10 (the safe limit)")
    same_as_cjson({ 1, 2, x = 3 }, "array part and a string key: an object")
    same_as_cjson({ [0] = "zero", [1] = "one" }, "key 0: an object")
    same_as_cjson({ [1.5] = "x" }, "a fractional key")
    same_as_cjson({ [-1] = "x" }, "a negative key")
    same_as_cjson({ { {} }, { a = { b = { 1, 2 } } } }, "nested")
end)

t.test("what cjson refuses, the core declines", function()
    t.eq(enc(0 / 0), nil)
    t.eq(enc(1 / 0), nil)
    t.eq(enc({ f = print }), nil)
    t.eq(enc({ [1] = 1, [100] = 2 }), nil) -- excessively sparse
    t.eq(enc({ [true] = 1 }), nil)
    t.eq(enc(coroutine.create(print)), nil)
    local deep = {}
    local cur = deep
    for _ = 1, 200 do
        cur[1] = {}
        cur = cur[1]
    end
    t.eq(enc(deep), nil) -- deep nesting: cjson decides (it encodes this one)
    t.ok(cjson.encode(deep) ~= nil)
end)

t.test("random values: the same text as cjson", function()
    math.randomseed(1234)
    local keys = { "a", "b", "id", "name", "x y", "ü", "\n", "/", "" }
    local function random_value(depth)
        local r = math.random(1, depth > 3 and 5 or 8)
        if r == 1 then return math.random(-1000, 1000)
        elseif r == 2 then return (math.random() - 0.5) * 10 ^ math.random(-10, 20)
        elseif r == 3 then
            local n, parts = math.random(0, 12), {}
            for i = 1, n do parts[i] = string.char(math.random(0, 255)) end
            return table.concat(parts)
        elseif r == 4 then return math.random() < 0.5
        elseif r == 5 then return cjson.null
        elseif r == 6 then
            local a = {}
            for i = 1, math.random(0, 6) do a[i] = random_value(depth + 1) end
            if math.random() < 0.2 then a[math.random(1, 14)] = 1 end -- holes, sometimes too sparse
            return a
        else
            local o = {}
            for _ = 1, math.random(0, 5) do
                local k = math.random() < 0.8 and keys[math.random(#keys)] or math.random(-3, 20)
                o[k] = random_value(depth + 1)
            end
            return o
        end
    end
    local declined = 0
    for i = 1, 20000 do
        if same_as_cjson(random_value(0), "random value " .. i) == nil then declined = declined + 1 end
    end
    t.ok(declined < 2000, declined .. " of 20000 declined")
end)

t.done()
