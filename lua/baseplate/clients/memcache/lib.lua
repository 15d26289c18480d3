-- memcache serializers, compatible with Baseplate.py's
-- baseplate.clients.memcache.lib: memcached stores bytes and a number of
-- flags with each value; the flags say how the bytes were made.
--
--   Flags.JSON = 1, Flags.INTEGER = 2, Flags.LONG = 4, Flags.ZLIB = 8
--
--   make_dump_and_compress_fn(min_compress_length, compress_level)
--       a serializer: strings as they are (flags 0), integers as decimal
--       text (INTEGER), anything else as JSON (JSON); compressed with zlib
--       (ZLIB added) when the result is longer than min_compress_length
--       (0: never)
--   decompress_and_load(key, data, flags)
--       its deserializer: reads what Baseplate.py's serializers write
--
-- Unlike Baseplate.py's, decompress_and_load raises when it cannot read a
-- value (a Python pickle, which has the same flag as JSON; flags it does
-- not know; broken JSON) instead of returning None or the bytes.
local ffi = require("ffi")
local core = require("baseplate.core")
local cjson = require("cjson")

-- (declared with the client: baseplate.clients.memcache)
require("baseplate.clients.memcache")

local C = core.C
local ffi_string, format, floor, huge = ffi.string, string.format, math.floor, math.huge
local type, tostring, tonumber, error = type, tostring, tonumber, error
local band = bit.band

local M = {}

M.Flags = { JSON = 1, INTEGER = 2, LONG = 4, ZLIB = 8 }
local JSON, INTEGER, LONG, ZLIB = 1, 2, 4, 8

--- The most bytes a compressed value may inflate to (a small value that
--- inflates to gigabytes is refused).
M.max_inflated_size = 64 * 1024 * 1024

local json = cjson.new()
json.encode_invalid_numbers(false)
json.encode_sparse_array(false, 2, 10)

local out_cell = ffi.new("const char *[1]")
local len_cell = ffi.new("size_t[1]")
local errbuf = ffi.new("char[256]")

--- zlib.compress(data, level) as Python's: the zlib format.
function M.compress(data, level)
    local rc = C.bp_memcache_zlib_compress(data, #data, level or 1, out_cell, len_cell, errbuf, 256)
    if rc ~= core.OK then error(ffi_string(errbuf), 2) end
    return ffi_string(out_cell[0], len_cell[0])
end

--- zlib.decompress(data), refusing more than max_out bytes.
function M.decompress(data, max_out)
    local rc = C.bp_memcache_zlib_inflate(data, #data, max_out or M.max_inflated_size, out_cell, len_cell,
        errbuf, 256)
    if rc ~= core.OK then error(ffi_string(errbuf), 2) end
    return ffi_string(out_cell[0], len_cell[0])
end

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local UINT64_MAX = ffi.new("uint64_t", -1)
local TWO53 = 2 ^ 53

-- Decimal text as Python's int() reads what "%d" wrote: a number when it is
-- exact as one, else an int64_t or uint64_t; nil when out of range.
local function parse_int(s)
    s = s:match("^%s*([+-]?%d+)%s*$")
    if not s then return nil end
    local n = tonumber(s)
    if n and n > -TWO53 and n < TWO53 then return n end
    local neg = s:sub(1, 1) == "-"
    local digits = s:gsub("^[+-]", ""):gsub("^0+", "")
    if #digits > 20 then return nil end
    local v = uint64_t(0)
    for i = 1, #digits do
        local d = digits:byte(i) - 48
        if v > (UINT64_MAX - d) / 10 then return nil end
        v = v * 10 + d
    end
    if neg then
        if v > uint64_t(2) ^ 63 then return nil end
        return -ffi.cast(int64_t, v - 1) - 1
    end
    if v < uint64_t(2) ^ 63 then return ffi.cast(int64_t, v) end
    return v
end
M.parse_int = parse_int

local function int_text(v)
    if type(v) == "number" then
        if v == floor(v) and v > -TWO53 and v < TWO53 then return format("%d", v) end
        return nil
    end
    if type(v) == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v)) then
        return (tostring(v):gsub("U?LL$", ""))
    end
    return nil
end

local function encode_json(key, v)
    if type(v) == "number" then
        -- exact (cjson keeps 14 significant digits)
        if v ~= v or v == huge or v == -huge then
            error(format("memcache: the value of %s is not a finite number", key), 0)
        end
        return format("%.17g", v)
    end
    local ok, s = pcall(json.encode, v)
    if not ok then error(format("memcache: the value of %s cannot be serialized: %s", key, s), 0) end
    return s
end

--- A serializer compatible with Baseplate.py's make_dump_and_compress_fn.
function M.make_dump_and_compress_fn(min_compress_length, compress_level)
    min_compress_length = min_compress_length or 0
    compress_level = compress_level or 1
    assert(type(min_compress_length) == "number" and min_compress_length >= 0, "min_compress_length >= 0")
    assert(type(compress_level) == "number" and compress_level >= 0 and compress_level <= 9,
        "compress_level between 0 and 9")
    return function(key, value)
        local data, flags
        if type(value) == "string" then
            data, flags = value, 0
        else
            data = int_text(value)
            if data then
                flags = INTEGER
            else
                data, flags = encode_json(key, value), JSON
            end
        end
        if compress_level > 0 and min_compress_length > 0 and #data > min_compress_length then
            return M.compress(data, compress_level), flags + ZLIB
        end
        return data, flags
    end
end

M.dump_and_compress = M.make_dump_and_compress_fn(0, 1)

local function cannot(key, why)
    error(format("memcache: cannot read the value of %s: %s", key, why), 0)
end

--- The deserializer of Baseplate.py's decompress_and_load: strings (flags
--- 0), integers (INTEGER or LONG), JSON (JSON; null is cjson.null),
--- each perhaps zlib-compressed (ZLIB).
function M.decompress_and_load(key, data, flags)
    if band(flags, ZLIB) ~= 0 then
        local ok, inflated = pcall(M.decompress, data)
        if not ok then cannot(key, inflated) end
        data, flags = inflated, flags - ZLIB
    end
    if flags == 0 then return data end
    if flags == INTEGER or flags == LONG then
        local n = parse_int(data)
        if n == nil then cannot(key, "flags " .. flags .. " (an integer), but not a 64-bit integer") end
        return n
    end
    if flags == JSON then
        if data:byte(1) == 0x80 then
            cannot(key, "it is a Python pickle (flags 1 and pickle's header; written by "
                .. "make_pickle_and_compress_fn or pylibmc), which this client does not read")
        end
        local ok, v = pcall(json.decode, data)
        if not ok then
            cannot(key, "flags 1 (JSON), but not JSON (a Python pickle of protocol 0 or 1?): " .. tostring(v))
        end
        return v
    end
    cannot(key, format("flags %d: not a format of Baseplate.py's serializers", flags))
end

--- Pickles are Python's alone: these raise.
function M.decompress_and_unpickle(key)
    cannot(key, "Python pickles are not read by this client (decompress_and_unpickle)")
end

function M.make_pickle_and_compress_fn()
    error("memcache: make_pickle_and_compress_fn: Python pickles are not written by this client", 2)
end

--- The serializer of a client made without one: strings only (flags 0).
function M.raw_serializer(key, value)
    if type(value) ~= "string" then
        error(format("memcache: the value of %s is a %s; without a serializer (make_dump_and_compress_fn) "
            .. "values are strings", key, type(value)), 0)
    end
    return value, 0
end

--- The deserializer of a client made without one: values with flags 0 as
--- they are; others raise (they need the serializer that wrote them).
function M.raw_deserializer(key, data, flags)
    if flags ~= 0 then
        cannot(key, format("flags %d and no deserializer (decompress_and_load reads Baseplate.py's)", flags))
    end
    return data
end

return M
