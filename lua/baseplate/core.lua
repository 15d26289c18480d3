-- The FFI bridge to the C core: resolves the library, checks the ABI version,
-- and mirrors the status vocabulary of include/baseplate/common.h.
--
-- Inside baseplate-serve/-script/-shell the core's symbols are already in the
-- process (ffi.C). Under a plain LuaJIT the library is loaded with ffi.load
-- (BASEPLATE_LIB names it explicitly, else "baseplate" on the linker path).
local ffi = require("ffi")

ffi.cdef([[
int bp_abi_version(void);
const char *bp_version_string(void);
const char *bp_strerror(int status);
]])

local ABI_VERSION = 4 -- BP_ABI_VERSION this Lua code was written against

local function resolve()
    local ok = pcall(function() return ffi.C.bp_abi_version end)
    if ok then
        return ffi.C
    end
    return ffi.load(os.getenv("BASEPLATE_LIB") or "baseplate", true)
end

local C = resolve()

local abi = C.bp_abi_version()
if abi ~= ABI_VERSION then
    error(string.format(
        "baseplate: the Lua modules expect core ABI %d but the loaded core has ABI %d (%s);"
            .. " install matching versions",
        ABI_VERSION, abi, ffi.string(C.bp_version_string())), 0)
end

local M = {
    C = C,
    ABI_VERSION = ABI_VERSION,
    version = ffi.string(C.bp_version_string()),

    -- include/baseplate/common.h's numbers (tests/lua/test-ffi-decls.lua checks
    -- that they agree): an E* code is the negative errno it names.
    OK = 0,
    ERROR = -5001,
    AGAIN = -5002,
    DECLINED = -5003,
    ENOMEM = -12,    -- -ENOMEM
    EINVAL = -22,    -- -EINVAL
    ENOENT = -2,     -- -ENOENT
    EIO = -5,        -- -EIO
    ECLOSED = -32,   -- -EPIPE
    ETOOBIG = -90,   -- -EMSGSIZE
    ETIMEDOUT = -110, -- -ETIMEDOUT
    ECANCELED = -125, -- -ECANCELED
}

--- The text for a status code (any BP_* code or negative errno).
function M.strerror(status)
    return ffi.string(C.bp_strerror(status))
end

-- One scratch buffer for error messages coming back from C (never per call).
M.errbuf_size = 1024
M.errbuf = ffi.new("char[?]", M.errbuf_size)

--- The message C wrote into the shared error buffer.
function M.errmsg()
    return ffi.string(M.errbuf)
end

return M
