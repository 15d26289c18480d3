-- Who may use the admin endpoints (docs/prometheus.md, `admin.allow`):
-- loopback always, other addresses and networks when the key names them.
-- Needs only the FFI (inet_pton), so that its fuzz target runs it in a
-- plain LuaJIT state (tests/fuzz/fuzz-admin-allow.c).
local ffi = require("ffi")

ffi.cdef([[
int inet_pton(int af, const char *src, void *dst);
]])

local M = {}
local AF_INET, AF_INET6 = 2, 10
local band = require("bit").band

local function quote(s)
    return string.format("%q", s):gsub("\\\n", "\\n")
end

--- An address as 16 bytes (IPv4 as IPv4-mapped IPv6), or nil.
local addr_buf = ffi.new("uint8_t[16]")
local function address_bytes(text)
    if text:find("\0", 1, true) then return nil end
    if ffi.C.inet_pton(AF_INET, text, addr_buf) == 1 then
        return "\0\0\0\0\0\0\0\0\0\0\255\255" .. ffi.string(addr_buf, 4)
    end
    if ffi.C.inet_pton(AF_INET6, text, addr_buf) == 1 then return ffi.string(addr_buf, 16) end
    return nil
end
M.address_bytes = address_bytes

-- Whether the first `bits` bits of two 16-byte strings are the same.
local function prefix_match(x, y, bits)
    local whole = math.floor(bits / 8)
    if x:sub(1, whole) ~= y:sub(1, whole) then return false end
    local rest = bits % 8
    if rest == 0 then return true end
    local mask = 256 - 2 ^ (8 - rest)
    return band(x:byte(whole + 1), mask) == band(y:byte(whole + 1), mask)
end

--- Parse `admin.allow`: "*" (anyone: returns false), or addresses and
--- networks (10.0.0.0/8, 192.0.2.7, fd00::/8) separated by commas: a list
--- of { 16 bytes, prefix bits }. Raises a reason (a string).
function M.parse(text)
    local list = {}
    for item in text:gmatch("[^,%s]+") do
        if item == "*" then return false end
        local addr, bits = item:match("^([^/]+)/(%d+)$")
        addr = addr or item
        local b = address_bytes(addr)
        if not b then
            error("expected addresses or networks (10.0.0.0/8, ::1) separated by commas, or *, got "
                .. quote(item), 0)
        end
        local v4 = not addr:find(":", 1, true)
        local max = v4 and 32 or 128
        local n = tonumber(bits or max)
        if #(bits or "") > 3 or n > max then error("prefix length too long in " .. quote(item), 0) end
        list[#list + 1] = { b, v4 and n + 96 or n }
    end
    if #list == 0 then error("expected addresses or networks, or *", 0) end
    return list
end

local LOOPBACK = { { address_bytes("127.0.0.1"), 104 }, { address_bytes("::1"), 128 } }

--- Whether `remote` (request.remote_addr) may use the admin endpoints:
--- loopback always; others when `allow` (parse's list) lets them in, or
--- anyone when allow is false (`*`).
function M.allowed(remote, allow)
    if allow == false then return true end
    local b = address_bytes(remote or "")
    if not b then return false end
    for _, rule in ipairs(LOOPBACK) do
        if prefix_match(b, rule[1], rule[2]) then return true end
    end
    for _, rule in ipairs(allow or {}) do
        if prefix_match(b, rule[1], rule[2]) then return true end
    end
    return false
end

return M
