-- Message signatures, as Baseplate.py's baseplate.lib.crypto makes them
-- (formats.md "Message signatures"; docs/lib-crypto.md):
--
--   local crypto = require("baseplate.lib.crypto")
--   local sig = crypto.make_signature(secret, "hello", 86400)  -- valid for a day
--   local ok, err = pcall(crypto.validate_signature, secret, "hello", sig)
--   -- err.class: "UnreadableSignatureError", "IncorrectSignatureError" or
--   -- "ExpiredSignatureError" (with err.expiration); crypto.is_signature_error(err)
--
-- `secret` is a versioned secret ({ current = …, previous = …, next = … },
-- as the secrets store's get_versioned returns) or a plain string: the
-- current version signs, every version is tried when validating. The
-- HMAC-SHA256, its constant-time comparison and the encoding are in C
-- (include/baseplate/crypto.h).
local ffi = require("ffi")
local core = require("baseplate.core")

ffi.cdef([[
int bp_signature_make(const void *key, size_t keylen, const void *msg, size_t msglen,
                      int64_t expiration, char out[53]);
int bp_signature_read(const char *sig, size_t len, int *version, int64_t *expiration);
int bp_signature_matches(const void *key, size_t keylen, const void *msg, size_t msglen,
                         const char *sig, size_t len);
]])

local C = core.C
local type, setmetatable, tonumber, floor = type, setmetatable, tonumber, math.floor

local M = {}

--- Seconds since the epoch (a number with a fraction): the runtime's
--- wall clock, which baseplate.testing can freeze and move on.
M.clock = require("baseplate.runtime").time

local SignatureError = {}
SignatureError.__index = SignatureError
SignatureError.__tostring = function(self) return self.class .. ": " .. self.message end
M.SignatureError = SignatureError

local function raise(class, message, extra)
    local e = setmetatable(extra or {}, SignatureError)
    e.class, e.message = class, message
    error(e, 3)
end

--- Whether `err` is one of this module's errors.
function M.is_signature_error(err)
    return type(err) == "table" and getmetatable(err) == SignatureError
end

local function versions(secret)
    if type(secret) == "string" then return { secret } end
    if type(secret) ~= "table" or type(secret.current) ~= "string" then
        error("expected a versioned secret ({ current = ..., previous = ..., next = ... }) or a string", 3)
    end
    local v = { secret.current }
    if type(secret.previous) == "string" then v[#v + 1] = secret.previous end
    if type(secret.next) == "string" then v[#v + 1] = secret.next end
    return v
end

local sig_buf = ffi.new("char[53]")

--- A signature of `message` with the secret's current version, valid for
--- `max_age` seconds from now.
function M.make_signature(secret, message, max_age)
    local key = versions(secret)[1]
    if type(message) ~= "string" then error("make_signature: message must be a string", 2) end
    if type(max_age) ~= "number" or max_age ~= max_age then
        error("make_signature: max_age must be a number of seconds", 2)
    end
    local expiration = floor(M.clock() + max_age)
    local rc = C.bp_signature_make(key, #key, message, #message, expiration, sig_buf)
    if rc == core.EINVAL then error("make_signature: the expiration does not fit 32 bits: " .. expiration, 2) end
    if rc ~= core.OK then error("make_signature: " .. core.strerror(rc), 2) end
    return ffi.string(sig_buf, 52)
end

local version_cell, expiration_cell = ffi.new("int[1]"), ffi.new("int64_t[1]")

--- Check `signature` of `message`: { version = 1, expiration = SECONDS } if
--- it is good, else raises a SignatureError (class Unreadable…, Expired…
--- with `expiration`, or Incorrect…).
function M.validate_signature(secret, message, signature)
    local keys = versions(secret)
    if type(message) ~= "string" then error("validate_signature: message must be a string", 2) end
    if type(signature) ~= "string"
        or C.bp_signature_read(signature, #signature, version_cell, expiration_cell) ~= core.OK then
        raise("UnreadableSignatureError", "the signature is corrupt or wrongly formatted")
    end
    local expiration = tonumber(expiration_cell[0])
    if M.clock() > expiration then
        raise("ExpiredSignatureError", "the signature expired at " .. expiration, { expiration = expiration })
    end
    for i = 1, #keys do
        local k = keys[i]
        if C.bp_signature_matches(k, #k, message, #message, signature, #signature) == 1 then
            return { version = version_cell[0], expiration = expiration }
        end
    end
    raise("IncorrectSignatureError", "the signature does not match the message")
end

return M
