-- The secrets store: Baseplate.py's baseplate.lib.secrets over the file the
-- secrets fetcher writes (formats.md "Secrets file"; docs/lib-secrets.md).
--
--   local secrets = require("baseplate.lib.secrets")
--   local store = secrets.secrets_store_from_config(app_config)   -- secrets.path
--   local key = store:get_versioned("secret/myservice/signing-key")  -- .current, .previous, .next
--   local creds = store:get_credentials("secret/myservice/db")       -- .username, .password
--
-- The file is watched (baseplate.lib.file_watcher) and parsed again when the
-- fetcher replaces it; fetch secrets from the store each time they are
-- needed. Secret values never appear in an error message or a log line:
-- errors name the secret's path and what is wrong with it, and
-- tostring() of a secret hides its values.
local cjson_mod = require("cjson")

local type, tostring, setmetatable, getmetatable, error, pcall, ipairs =
    type, tostring, setmetatable, getmetatable, error, pcall, ipairs
local byte, char, find, format, gsub = string.byte, string.char, string.find, string.format, string.gsub
local concat, unpack = table.concat, unpack

local cjson = cjson_mod.new()
local null = cjson.null

local M = {}

M.DEFAULT_PATH = "/var/local/secrets.json"

-- Errors ------------------------------------------------------------------------

local SecretError = {}
SecretError.__index = SecretError
SecretError.__tostring = function(self) return self.class .. ": " .. self.message end
M.SecretError = SecretError

-- Python's repr() of a str, for the texts the reference builds with %r.
local function py_repr(s)
    s = tostring(s)
    local q = (find(s, "'", 1, true) and not find(s, '"', 1, true)) and '"' or "'"
    local body = gsub(s, "[%z\1-\31\127\\'\"]", function(c)
        if c == "\\" then return "\\\\" end
        if c == "\n" then return "\\n" end
        if c == "\r" then return "\\r" end
        if c == "\t" then return "\\t" end
        if c == q then return "\\" .. c end
        if c == "'" or c == '"' then return c end
        return format("\\x%02x", byte(c))
    end)
    return q .. body .. q
end
M.py_repr = py_repr

local function new_error(class, message, fields)
    local e = fields or {}
    e.class, e.message = class, message
    return setmetatable(e, SecretError)
end

--- CorruptSecretError(path, message): "<path>: <message>".
function M.CorruptSecretError(path, message)
    return new_error("CorruptSecretError", path .. ": " .. message, { path = path, reason = message })
end

--- SecretNotFoundError(name): "secret not found: '<name>'".
function M.SecretNotFoundError(name)
    return new_error("SecretNotFoundError", "secret not found: " .. py_repr(name), { name = name })
end

--- SecretsNotAvailableError(inner): the inner error's text.
function M.SecretsNotAvailableError(inner)
    local msg = type(inner) == "table" and inner.message or tostring(inner)
    return new_error("SecretsNotAvailableError", msg, { inner = inner })
end

--- Whether `err` is one of this module's errors (of class `class`, if given).
function M.is_secret_error(err, class)
    return type(err) == "table" and getmetatable(err) == SecretError and (class == nil or err.class == class)
end

local function raise(e) error(e, 3) end

-- Secrets -------------------------------------------------------------------------

local HIDDEN = "<hidden>"

local VersionedSecret = {}
VersionedSecret.__index = VersionedSecret
VersionedSecret.__tostring = function(self)
    return format("VersionedSecret(previous=%s, current=%s, next=%s)", self.previous and HIDDEN or "None",
        HIDDEN, self.next and HIDDEN or "None")
end
M.VersionedSecret_mt = VersionedSecret

--- VersionedSecret(previous, current, next): previous and next may be nil.
function M.VersionedSecret(previous, current, next_)
    return setmetatable({ previous = previous, current = current, next = next_ }, VersionedSecret)
end

--- The versions in the order they are tried: current, previous, next.
function VersionedSecret:all_versions()
    local v = { self.current }
    if self.previous ~= nil then v[#v + 1] = self.previous end
    if self.next ~= nil then v[#v + 1] = self.next end
    return v
end

--- A versioned secret of one version (for APIs that take versioned secrets).
function M.from_simple_secret(value)
    return M.VersionedSecret(nil, value, nil)
end
VersionedSecret.from_simple_secret = function(_, value) return M.from_simple_secret(value) end

local CredentialSecret = {}
CredentialSecret.__index = CredentialSecret
CredentialSecret.__tostring = function(self)
    return format("CredentialSecret(username=%s, password=%s)", py_repr(self.username), HIDDEN)
end
M.CredentialSecret_mt = CredentialSecret

--- CredentialSecret(username, password).
function M.CredentialSecret(username, password)
    return setmetatable({ username = username, password = password }, CredentialSecret)
end

-- Decoding ------------------------------------------------------------------------

local B64 = {}
do
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for i = 1, 64 do B64[byte(alphabet, i)] = i - 1 end
end

-- Python's base64.b64decode (validate=False), as CPython's binascii does it:
-- characters outside the alphabet are skipped, padding is required where
-- the data needs it, and a complete pad sequence ends the input. nil and the
-- reason on failure (the reason never quotes the input).
local function b64decode(s)
    local out, n = {}, 0
    local quad, pads, left = 0, 0, 0
    for i = 1, #s do
        local c = byte(s, i)
        if c == 61 then -- '='
            if quad >= 2 then
                pads = pads + 1
                if quad + pads >= 4 then quad = 0 break end
            end
        else
            local v = B64[c]
            if v then
                pads = 0
                if quad == 0 then
                    quad, left = 1, v
                elseif quad == 1 then
                    n = n + 1
                    out[n] = left * 4 + math.floor(v / 16)
                    quad, left = 2, v % 16
                elseif quad == 2 then
                    n = n + 1
                    out[n] = left * 16 + math.floor(v / 4)
                    quad, left = 3, v % 4
                else
                    n = n + 1
                    out[n] = left * 64 + v
                    quad, left = 0, 0
                end
            end
        end
    end
    if quad == 1 then
        return nil, format("Invalid base64-encoded string: number of data characters (%d) cannot be 1 more"
            .. " than a multiple of 4", math.floor(n / 3) * 4 + 1)
    elseif quad ~= 0 then
        return nil, "Incorrect padding"
    end
    local parts = {}
    for i = 1, n, 4096 do
        parts[#parts + 1] = char(unpack(out, i, math.min(n, i + 4095)))
    end
    return concat(parts)
end
M.b64decode = b64decode

local function decode_secret(path, encoding, value, key)
    if type(value) ~= "string" then
        raise(M.CorruptSecretError(path, format("secret value '%s' is not a string", key)))
    end
    if encoding == "identity" then return value end
    if encoding == "base64" then
        local out, why = b64decode(value)
        if not out then raise(M.CorruptSecretError(path, "unable to decode base64: " .. why)) end
        return out
    end
    raise(M.CorruptSecretError(path, "unknown encoding: " .. py_repr(encoding)))
end

local function encoding_of(attrs)
    local e = attrs.encoding
    if e == nil or e == null then return "identity" end
    return e
end

-- The file ------------------------------------------------------------------------

--- Parse the secrets file's text: the decoded JSON object, or raises an
--- error naming what is wrong (never quoting the file). The store's file
--- watcher keeps the last good data when this raises.
function M.parse_secrets_file(text)
    local ok, data = pcall(cjson.decode, text)
    if not ok then error("invalid JSON: " .. tostring(data), 0) end
    if type(data) ~= "table" or (data[1] ~= nil) then error("the secrets file is not a JSON object", 0) end
    local secrets = data.secrets
    if secrets ~= nil and secrets ~= null and (type(secrets) ~= "table" or secrets[1] ~= nil) then
        error("the secrets file's \"secrets\" is not an object", 0)
    end
    local vault = data.vault
    if vault ~= nil and vault ~= null and type(vault) ~= "table" then
        error("the secrets file's \"vault\" is not an object", 0)
    end
    return data
end

--- The reference's parse_secrets_fetcher: the raw secret at `secret_path`
--- in the decoded file, or raises SecretNotFoundError.
function M.parse_secrets_fetcher(data, secret_path)
    secret_path = secret_path or ""
    local secrets = type(data) == "table" and data.secrets
    local attrs = type(secrets) == "table" and secrets[secret_path] or nil
    if attrs == nil or attrs == null then raise(M.SecretNotFoundError(secret_path)) end
    if type(attrs) ~= "table" or attrs[1] ~= nil then
        raise(M.CorruptSecretError(secret_path, "secret is not a JSON object"))
    end
    return attrs
end

-- The store -----------------------------------------------------------------------

local Store = {}
Store.__index = Store
M.SecretsStore_mt = Store

local function file_parser(_, text) return M.parse_secrets_file(text) end

--- SecretsStore(path[, timeout[, backoff]]): the store over the file at
--- `path`, watched for changes. `timeout`: seconds to wait for the file at
--- start (no wait by default); `backoff`: seconds between the watcher's
--- checks.
function M.SecretsStore(path, timeout, backoff)
    if type(path) ~= "string" or path == "" then error("SecretsStore: path must be a non-empty string", 2) end
    local fw = require("baseplate.lib.file_watcher")
    local ok, watcher = pcall(fw.FileWatcher, path, file_parser,
        { timeout = timeout, backoff = backoff, binary = true })
    if not ok then
        if fw.is_not_available(watcher) then error(M.SecretsNotAvailableError(watcher), 2) end
        error(watcher, 2)
    end
    return setmetatable({ path = path, _watcher = watcher, parser = M.parse_secrets_fetcher }, Store)
end

--- secrets_store_from_config(app_config[, timeout[, prefix[, backoff]]]):
--- the store at `{prefix}path` (prefix "secrets."; default
--- /var/local/secrets.json).
function M.secrets_store_from_config(app_config, timeout, prefix, backoff)
    local config = require("baseplate.lib.config")
    prefix = prefix or "secrets."
    local cfg = config.parse_config_at(app_config, prefix, {
        path = config.Optional(config.String, M.DEFAULT_PATH),
    })
    return M.SecretsStore(cfg.path, timeout, backoff)
end

local function get_data(self)
    local w = self._watcher
    local ok, data, mtime
    if w.try_get_data_and_mtime then
        ok, data, mtime = w:try_get_data_and_mtime() -- no pcall: its return would end a trace
    else
        ok, data, mtime = pcall(w.get_data_and_mtime, w)
    end
    if not ok then raise(M.SecretsNotAvailableError(data)) end
    return data, mtime
end

function Store:get_raw_and_mtime(path)
    local data, mtime = get_data(self)
    return self.parser(data, path), mtime
end

function Store:get_raw(path)
    return (self:get_raw_and_mtime(path))
end

function Store:get_credentials_and_mtime(path)
    local attrs, mtime = self:get_raw_and_mtime(path)
    if attrs.type ~= "credential" then raise(M.CorruptSecretError(path, "secret does not have type=credential")) end
    local encoding = encoding_of(attrs)
    if encoding ~= "identity" then
        raise(M.CorruptSecretError(path, format("secret has encoding=%s rather than encoding=identity",
            tostring(encoding))))
    end
    local values = {}
    for _, key in ipairs({ "username", "password" }) do
        local v = attrs[key]
        if v == nil then raise(M.CorruptSecretError(path, format("secret does not have key '%s'", key))) end
        if type(v) ~= "string" then
            raise(M.CorruptSecretError(path, format("secret value '%s' is not a string", key)))
        end
        values[key] = v
    end
    return M.CredentialSecret(values.username, values.password), mtime
end

function Store:get_credentials(path)
    return (self:get_credentials_and_mtime(path))
end

function Store:get_simple_and_mtime(path)
    local attrs, mtime = self:get_raw_and_mtime(path)
    if attrs.type ~= "simple" then raise(M.CorruptSecretError(path, "secret does not have type=simple")) end
    local value = attrs.value
    if value == nil then raise(M.CorruptSecretError(path, "secret does not have value")) end
    return decode_secret(path, encoding_of(attrs), value, "value"), mtime
end

function Store:get_simple(path)
    return (self:get_simple_and_mtime(path))
end

local function optional_version(attrs, key, path, encoding)
    local v = attrs[key]
    -- the reference's `value and decode(value)`: null, absent and "" are no version
    if v == nil or v == null or v == false or v == "" then return nil end
    return decode_secret(path, encoding, v, key)
end

function Store:get_versioned_and_mtime(path)
    local attrs, mtime = self:get_raw_and_mtime(path)
    if attrs.type ~= "versioned" then raise(M.CorruptSecretError(path, "secret does not have type=versioned")) end
    local current = attrs.current
    if current == nil then raise(M.CorruptSecretError(path, "secret does not have 'current' value")) end
    local encoding = encoding_of(attrs)
    local previous, next_ = optional_version(attrs, "previous", path, encoding),
        optional_version(attrs, "next", path, encoding)
    return M.VersionedSecret(previous, decode_secret(path, encoding, current, "current"), next_), mtime
end

function Store:get_versioned(path)
    return (self:get_versioned_and_mtime(path))
end

local function vault_field(self, key)
    local data = get_data(self)
    local vault = data.vault
    local v = type(vault) == "table" and vault[key]
    if type(v) ~= "string" then raise(M.SecretNotFoundError("vault." .. key)) end
    return v
end

--- The URL of Vault, from the file's "vault" object.
function Store:get_vault_url() return vault_field(self, "url") end

--- The Vault token the fetcher got, from the file's "vault" object.
function Store:get_vault_token() return vault_field(self, "token") end

--- For Baseplate:add_to_context("secrets", store): the store itself.
function Store:make_object_for_context(_name, _span) return self end

--- Stop watching the file.
function Store:close()
    if self._watcher then self._watcher:close() end
end

-- The fake --------------------------------------------------------------------------

--- FakeSecretsStore(fake_secrets): a store over a table shaped like the
--- file ({ secrets = { [path] = {...} }, vault = {...} }), for tests.
function M.FakeSecretsStore(fake_secrets)
    if type(fake_secrets) ~= "table" then error("FakeSecretsStore: expected a table", 2) end
    local fw = require("baseplate.lib.file_watcher")
    return setmetatable({ path = "/fake-secrets", _watcher = fw.FakeFileWatcher(fake_secrets),
        parser = M.parse_secrets_fetcher }, Store)
end

return M
