-- Configuration parsing and validation: Baseplate.py's baseplate.lib.config.
--
-- parse_config turns a table of stringy keys and values (an INI section) into
-- a structured, typed configuration table:
--
--   local config = require("baseplate.lib.config")
--   local cfg = config.parse_config(app_config, {
--       simple = config.Boolean,
--       cards = config.TupleOf(config.OneOf{ clubs = 1, spades = 2 }),
--       nested = { once = config.Integer, really = { deep = config.Timespan } },
--   })
--   cfg.nested.really.deep   -- seconds, as a number
--
-- A spec entry is a parser function (text -> value; it raises with a reason),
-- a parser object (a table with a metatable and a parse(self, key_path, raw)
-- method, like DictOf), or a plain table: a nested spec for dotted keys.
-- Violations raise a ConfigurationError whose message is "{key}: {reason}".
-- The value primitives are in C (include/baseplate/config.h); docs/lib-config.md
-- documents every type.
local ffi = require("ffi")
local core = require("baseplate.core")

ffi.cdef([[
enum {
  BP_AF_INET = 1,
  BP_AF_INET6 = 2,
  BP_AF_UNIX = 3,
  BP_ENDPOINT_HOST_SIZE = 256,
  BP_ENDPOINT_PATH_SIZE = 108
};
typedef struct bp_endpoint_s {
  int family;
  int port;
  char host[BP_ENDPOINT_HOST_SIZE];
  char path[BP_ENDPOINT_PATH_SIZE];
} bp_endpoint_t;
int bp_config_parse_integer(const char *text, size_t len, int base, int64_t *out,
                            char *err, size_t errlen);
int bp_config_parse_float(const char *text, size_t len, double *out, char *err,
                          size_t errlen);
int bp_config_parse_boolean(const char *text, size_t len, int *out, char *err,
                            size_t errlen);
enum {
  BP_CONFIG_TIMESPAN_INFINITE = 1,
  BP_CONFIG_TIMESPAN_NEGATIVE = 2
};
int bp_config_parse_timespan(const char *text, size_t len, int flags, double *out,
                             char *err, size_t errlen);
int bp_config_parse_percent(const char *text, size_t len, double *out, char *err,
                            size_t errlen);
int bp_config_parse_endpoint(const char *text, size_t len, bp_endpoint_t *out,
                             char *err, size_t errlen);
int bp_config_parse_base64(const char *text, size_t len, unsigned char *out,
                           size_t cap, size_t *outlen, char *err, size_t errlen);
int bp_config_parse_unix_user(const char *text, size_t len, uint32_t *uid,
                              char *err, size_t errlen);
int bp_config_parse_unix_group(const char *text, size_t len, uint32_t *gid,
                               char *err, size_t errlen);
]])

local C = core.C
local ffi_new, ffi_string = ffi.new, ffi.string
local errbuf, errbuf_size = core.errbuf, core.errbuf_size
local OK, ETOOBIG = core.OK, core.ETOOBIG
local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local getmetatable, setmetatable, error, pcall = getmetatable, setmetatable, error, pcall
local os_getenv, io_open = os.getenv, io.open
local sort, concat = table.sort, table.concat

local M = {}

-- Out-parameter cells and a scratch buffer, allocated once.
local int64_cell = ffi_new("int64_t[1]")
local double_cell = ffi_new("double[1]")
local int_cell = ffi_new("int[1]")
local id_cell = ffi_new("uint32_t[1]")
local size_cell = ffi_new("size_t[1]")
local endpoint_cell = ffi_new("bp_endpoint_t")
local BYTES_SIZE = 4096
local bytes_buf = ffi_new("unsigned char[?]", BYTES_SIZE)

local MAX_EXACT = 2 ^ 53 -- larger integers stay int64_t cdata

local FAMILIES = {
    [C.BP_AF_INET] = "AF_INET",
    [C.BP_AF_INET6] = "AF_INET6",
    [C.BP_AF_UNIX] = "AF_UNIX",
}

local function fail(rc)
    if rc ~= OK then
        error(ffi_string(errbuf), 0)
    end
end

local function trim(s)
    return (s:match("^%s*(.-)%s*$"))
end

-- A value as it appears in a reason: quoted, escaped, shortened as C does.
local QUOTE_MAX = 48
local function quote(s)
    local shown = #s > QUOTE_MAX and s:sub(1, QUOTE_MAX) or s
    shown = shown:gsub('[%c"\\]', function(c)
        if c == '"' or c == "\\" then
            return "\\" .. c
        end
        return string.format("\\x%02x", c:byte())
    end)
    return '"' .. shown .. (#s > QUOTE_MAX and '..."' or '"')
end

--- A value as error messages show it: double-quoted, control bytes and
--- quotes escaped (\x1b, \"), cut after QUOTE_MAX bytes.
M.quote = quote

local function is_callable(v)
    if type(v) == "function" then
        return true
    end
    local mt = getmetatable(v)
    return type(mt) == "table" and mt.__call ~= nil
end

local function is_parser_object(v)
    return type(v) == "table" and getmetatable(v) ~= nil and type(v.parse) == "function"
end

local function check_parser(v, who)
    if not is_callable(v) then
        error(who .. ": expected a parser function, got " .. type(v), 3)
    end
end

--------------------------------------------------------------------------------
-- Errors

--- The error raised for a configuration that violates the spec. Fields: key
--- (the dotted key path), reason, message ("{key}: {reason}"); tostring(err)
--- is the message. config.ConfigurationError(key, reason) makes one.
local ConfigurationError = {}
ConfigurationError.__index = ConfigurationError
ConfigurationError.__tostring = function(self)
    return self.message
end
setmetatable(ConfigurationError, {
    __call = function(_, key, reason)
        key, reason = tostring(key), tostring(reason)
        return setmetatable({ key = key, reason = reason, message = key .. ": " .. reason },
            ConfigurationError)
    end,
})
M.ConfigurationError = ConfigurationError

--- Whether `err` is a ConfigurationError.
function M.is_configuration_error(err)
    return getmetatable(err) == ConfigurationError
end

-- A parser's error(reason) carries "file.lua:12: " unless raised at level 0;
-- the reason is what the user should see.
local function strip_position(msg)
    return msg:match("^[^\n]-%.lua:%d+: (.*)$") or msg:match('^%[string ".-"%]:%d+: (.*)$') or msg
end

local function raise(key_path, err)
    local reason
    if type(err) == "string" then
        reason = strip_position(err)
    else
        reason = tostring(err)
    end
    error(ConfigurationError(key_path, reason), 0)
end

--------------------------------------------------------------------------------
-- Value types: each takes the raw text and returns the value or raises a reason

--- A raw string; empty is an error.
function M.String(text)
    if text == nil or text == "" then
        error("no value specified", 0)
    end
    return text
end

--- A floating-point number (Python float() syntax, also inf and nan).
function M.Float(text)
    fail(C.bp_config_parse_float(text, #text, double_cell, errbuf, errbuf_size))
    return double_cell[0]
end

local function parse_integer(text, base)
    fail(C.bp_config_parse_integer(text, #text, base, int64_cell, errbuf, errbuf_size))
    local v = int64_cell[0]
    if v >= -MAX_EXACT and v <= MAX_EXACT then
        return tonumber(v)
    end
    return v
end

--- An integer; non-whole numbers are errors. Used directly as a parser it
--- reads base 10; config.Integer{ base = 16 } (or config.Integer(nil, 16))
--- returns a parser for another base (0: from the 0x/0o/0b prefix).
--- Returns a Lua number, or an int64_t cdata beyond +-2^53.
function M.Integer(text, base)
    if type(text) == "table" then
        base = text.base
        text = nil
    end
    if base == nil then
        base = 10
    end
    if type(base) ~= "number" or base % 1 ~= 0 or (base ~= 0 and (base < 2 or base > 36)) then
        error("config.Integer: base must be 0 or 2..36, got " .. tostring(base), 2)
    end
    if text == nil then
        return function(t)
            return parse_integer(t, base)
        end
    end
    return parse_integer(text, base)
end

--- true or false, case-insensitive.
function M.Boolean(text)
    fail(C.bp_config_parse_boolean(text, #text, int_cell, errbuf, errbuf_size))
    return int_cell[0] ~= 0
end

local Endpoint = {}
Endpoint.__index = Endpoint
Endpoint.__tostring = function(self)
    if self.family == "AF_UNIX" then
        return self.path
    elseif self.family == "AF_INET6" then
        return "[" .. self.host .. "]:" .. self.port
    end
    return self.host .. ":" .. self.port
end
M.EndpointConfiguration = Endpoint

--- The host to hand to a socket: Baseplate.py's empty host (":80") is
--- INADDR_ANY, which is every interface to bind() and this host to
--- connect(); other hosts are returned as they are.
function M.socket_host(host)
    if host == "" then
        return "0.0.0.0"
    end
    return host
end

local InternetAddress = {}
InternetAddress.__index = InternetAddress
InternetAddress.__tostring = function(self)
    if self.host:find(":", 1, true) then
        return "[" .. self.host .. "]:" .. self.port
    end
    return self.host .. ":" .. self.port
end
M.InternetAddress = InternetAddress

--- An endpoint: "host:port", "[v6addr]:port" or (containing "/") the path of
--- a UNIX socket. Returns { family = "AF_INET" | "AF_INET6" | "AF_UNIX",
--- address = { host, port, host = , port = } or the path, host, port, path };
--- tostring gives it back as text.
function M.Endpoint(text)
    local e = endpoint_cell
    fail(C.bp_config_parse_endpoint(text, #text, e, errbuf, errbuf_size))
    local family = FAMILIES[e.family]
    if family == "AF_UNIX" then
        local path = ffi_string(e.path)
        return setmetatable({ family = family, address = path, path = path }, Endpoint)
    end
    local host, port = ffi_string(e.host), e.port
    local address = setmetatable({ host, port, host = host, port = port }, InternetAddress)
    return setmetatable({ family = family, address = address, host = host, port = port }, Endpoint)
end

local SPAN_NEGATIVE = C.BP_CONFIG_TIMESPAN_NEGATIVE
local SPAN_INFINITE = C.BP_CONFIG_TIMESPAN_INFINITE

--- A span of time, "30 seconds" or "1 day" (milliseconds, seconds, minutes,
--- hours, days); returns the number of seconds. A negative count gives a
--- negative span, as in Baseplate.py: wrap in config.NonNegative where
--- that makes no sense (timeouts).
function M.Timespan(text)
    fail(C.bp_config_parse_timespan(text, #text, SPAN_NEGATIVE, double_cell, errbuf, errbuf_size))
    return double_cell[0]
end

--- Like Timespan, and "infinite" gives math.huge.
function M.TimespanOrInfinite(text)
    fail(C.bp_config_parse_timespan(text, #text, SPAN_INFINITE + SPAN_NEGATIVE, double_cell, errbuf,
        errbuf_size))
    return double_cell[0]
end

--- A Timespan, or (the older style) a number of seconds: "30 seconds",
--- "30", "0.5". Baseplate.py's TimespanWithLegacyFallback.
function M.TimespanWithLegacyFallback(text)
    local ok, v = pcall(M.Timespan, text)
    if ok then
        return v
    end
    return M.Float(text)
end

--- Base64 (standard alphabet, padded); returns the decoded bytes as a string.
function M.Base64(text)
    local len = #text
    local rc = C.bp_config_parse_base64(text, len, bytes_buf, BYTES_SIZE, size_cell, errbuf,
        errbuf_size)
    if rc == ETOOBIG then
        local need = tonumber(size_cell[0])
        local buf = ffi_new("unsigned char[?]", need)
        fail(C.bp_config_parse_base64(text, len, buf, need, size_cell, errbuf, errbuf_size))
        return ffi_string(buf, need)
    end
    fail(rc)
    return ffi_string(bytes_buf, tonumber(size_cell[0]))
end

--- A percentage from "0%" to "100%"; returns a fraction, 0.372 for "37.2%".
function M.Percent(text)
    fail(C.bp_config_parse_percent(text, #text, double_cell, errbuf, errbuf_size))
    return double_cell[0]
end

--- A UNIX user name or decimal id; returns the user id.
function M.UnixUser(text)
    fail(C.bp_config_parse_unix_user(text, #text, id_cell, errbuf, errbuf_size))
    return tonumber(id_cell[0])
end

--- A UNIX group name or decimal id; returns the group id.
function M.UnixGroup(text)
    fail(C.bp_config_parse_unix_group(text, #text, id_cell, errbuf, errbuf_size))
    return tonumber(id_cell[0])
end

--- A path to a file, opened with io.open(path, mode) (mode "r" by default;
--- config.File("rb") or config.File{ mode = "rb" }). Returns the file handle.
function M.File(mode)
    if type(mode) == "table" then
        mode = mode.mode
    end
    mode = mode or "r"
    if type(mode) ~= "string" or not mode:match("^[rwa]%+?b?$") then
        error("config.File: invalid mode " .. quote(tostring(mode))
            .. " (use config.File() or config.File(\"r\"))", 2)
    end
    return function(text)
        if text == "" then
            error("no value specified", 0)
        end
        local f, err = io_open(text, mode)
        if not f then
            error("could not open file: " .. tostring(err), 0)
        end
        return f
    end
end

--- One of several choices: config.OneOf{ hearts = "H", spades = "S" } parses
--- "hearts" into "H". Array entries are choices that map to themselves:
--- config.OneOf{ "json", "text" }.
function M.OneOf(options)
    if type(options) ~= "table" or next(options) == nil then
        error("config.OneOf: expected a table of choices", 2)
    end
    local choices, names = {}, {}
    for name, value in pairs(options) do
        if type(name) == "number" then
            name = value
        end
        if type(name) ~= "string" then
            error("config.OneOf: choice names must be strings, got " .. type(name), 2)
        end
        choices[name] = value
        names[#names + 1] = name
    end
    sort(names)
    local expected = "expected one of " .. concat(names, ", ")
    return function(text)
        text = trim(text)
        if text == "" then
            error("no value specified", 0)
        end
        local value = choices[text]
        if value == nil then
            error(expected .. ", got " .. quote(text), 0)
        end
        return value
    end
end

--- A comma-separated list: items are trimmed, empty ones dropped, the rest
--- parsed with item_parser. Returns an array; nothing left is an error. A
--- line break separates items too (INI continuation lines).
function M.TupleOf(item_parser)
    check_parser(item_parser, "config.TupleOf")
    return function(text)
        local items, n = {}, 0
        for piece in (text .. ","):gmatch("([^,\n]*)[,\n]") do
            local item = trim(piece)
            if item ~= "" then
                n = n + 1
                items[n] = item
            end
        end
        if n == 0 then
            error("no values provided", 0)
        end
        local values = {}
        for i = 1, n do
            values[i] = item_parser(items[i])
        end
        return values
    end
end

--- item_parser's value, or `default` when the value is empty (or missing).
function M.Optional(item_parser, default)
    check_parser(item_parser, "config.Optional")
    return function(text)
        if not text:find("%S") then
            return default
        end
        return item_parser(text)
    end
end

--- parser's value, which must not be negative (a number or an int64_t
--- cdata): config.NonNegative(config.Timespan) for a timeout. nil (from an
--- Optional without a default) passes.
function M.NonNegative(parser)
    check_parser(parser, "config.NonNegative")
    return function(text)
        local v = parser(text)
        if v ~= nil and v < 0 then
            error("must not be negative, got " .. quote(trim(text)), 0)
        end
        return v
    end
end

--- primary's value or, if primary raises, fallback's (whose error is the
--- one reported).
function M.Fallback(primary, fallback)
    check_parser(primary, "config.Fallback")
    check_parser(fallback, "config.Fallback")
    return function(text)
        local ok, value = pcall(primary, text)
        if ok then
            return value
        end
        return fallback(text)
    end
end

--- parser's value; when the key is empty or missing, the value of the
--- environment variable env_var_name is parsed instead; when that is unset or
--- empty too, fallback_default if given, else parser("") decides (for the
--- built-in types: "no value specified").
function M.DefaultFromEnv(parser, env_var_name, fallback_default)
    check_parser(parser, "config.DefaultFromEnv")
    if type(env_var_name) ~= "string" or env_var_name == "" then
        error("config.DefaultFromEnv: expected the name of an environment variable", 2)
    end
    return function(text)
        if text:find("%S") then
            return parser(text)
        end
        local env = os_getenv(env_var_name)
        if env and env ~= "" then
            local ok, value = pcall(parser, env)
            if ok then
                return value
            end
            if type(value) == "string" then
                value = strip_position(value) .. " (from environment variable "
                    .. env_var_name .. ")"
            end
            error(value, 0)
        end
        if fallback_default ~= nil then
            return fallback_default
        end
        return parser("")
    end
end

--------------------------------------------------------------------------------
-- Specs

local parse_item

-- nil, or what is wrong with the spec at key_path.
local function spec_problem(spec, key_path)
    if is_parser_object(spec) or is_callable(spec) then
        return nil
    end
    if type(spec) ~= "table" or getmetatable(spec) ~= nil then
        return string.format("invalid spec for %s: expected a parser or a table, got %s",
            key_path ~= "" and key_path or "the root", type(spec))
    end
    for key, sub in pairs(spec) do
        if type(key) ~= "string" or key == "" or key:find(".", 1, true) then
            return string.format("invalid key %s in spec%s (keys are non-empty strings"
                .. " without dots; nest tables for dotted keys)", quote(tostring(key)),
                key_path ~= "" and (" for " .. key_path) or "")
        end
        local problem = spec_problem(sub, key_path ~= "" and (key_path .. "." .. key) or key)
        if problem then
            return problem
        end
    end
    return nil
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    sort(keys)
    return keys
end

parse_item = function(spec, key_path, raw)
    if is_parser_object(spec) then
        return spec:parse(key_path, raw)
    elseif is_callable(spec) then
        local text = raw[key_path]
        if text == nil then
            text = ""
        elseif type(text) ~= "string" then
            text = tostring(text)
        end
        local ok, value = pcall(spec, text)
        if not ok then
            raise(key_path, value)
        end
        return value
    end
    -- a nested spec (checked by spec_problem beforehand)
    local parsed = {}
    for _, key in ipairs(sorted_keys(spec)) do
        parsed[key] = parse_item(spec[key], key_path ~= "" and (key_path .. "." .. key) or key, raw)
    end
    return parsed
end

--- Base of the parser objects (DictOf): a parser object is any table with a
--- metatable and a parse(self, key_path, raw_config) method, which returns
--- the value or raises config.ConfigurationError(key, reason) with error(e, 0).
local Parser = {}
Parser.__index = Parser
M.Parser = Parser

local DictOf = setmetatable({}, { __index = Parser })
DictOf.__index = DictOf

function DictOf:parse(key_path, raw)
    local root = key_path ~= "" and (key_path .. ".") or ""
    local subkeys, seen = {}, {}
    for key in pairs(raw) do
        if type(key) == "string" and key:sub(1, #root) == root then
            local sub = key:match("^([^.]+)", #root + 1)
            if sub and not seen[sub] then
                seen[sub] = true
                subkeys[#subkeys + 1] = sub
            end
        end
    end
    sort(subkeys)
    local values = {}
    for _, sub in ipairs(subkeys) do
        values[sub] = parse_item(self.spec, root .. sub, raw)
    end
    return values
end

--- A group of options whose keys are not known in advance: every
--- "{key}.{name}" (or "{key}.{name}.…" for a spec) is parsed with `spec`, a
--- parser or a nested spec. Returns a table keyed by name.
function M.DictOf(spec)
    local problem = spec_problem(spec, "")
    if problem then
        error("config.DictOf: " .. problem, 2)
    end
    return setmetatable({ spec = spec }, DictOf)
end

--- Parse `raw` (a table of strings, e.g. an INI section) against `spec`.
--- Returns nested tables of values; raises a ConfigurationError.
function M.parse_config(raw, spec)
    if type(raw) ~= "table" then
        error("config.parse_config: expected a table of raw values, got " .. type(raw), 2)
    end
    local problem = spec_problem(spec, "")
    if problem then
        error("config.parse_config: " .. problem, 2)
    end
    return parse_item(spec, "", raw)
end

--- Parse the keys of `raw` that start with `prefix` ("db." for db.url,
--- db.pool_size…) against `spec`, which names them without the prefix.
--- Errors name the whole key ("db.url: no value specified").
function M.parse_config_at(raw, prefix, spec)
    local path = prefix:gsub("%.$", "")
    return M.parse_config(raw, { [path] = spec })[path]
end

return M
