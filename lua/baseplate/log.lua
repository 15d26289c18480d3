-- Logging from Lua through the core's facility (include/baseplate/log.h).
--
--   local log = require("baseplate.log").get_logger("myservice.db")
--   log:info("connected to %s", host)        -- string.format-style
--   log:error("query failed", {query = q})   -- a table adds JSON fields
--   log:exception("boom", err)               -- adds exc_info (a traceback)
local ffi = require("ffi")
local core = require("baseplate.core")

ffi.cdef([[
int bp_log_enabled(const char *logger, int level);
void bp_log_write(int level, const char *logger, size_t logger_len, const char *msg,
                  size_t msg_len, const char *module, int lineno, const char *exc_info,
                  const char *extra);
int bp_log_set_level(const char *logger, int level);
int bp_log_get_level(const char *logger);
int bp_log_level_from_name(const char *name);
void bp_log_set_format(int format);
]])

local C = core.C
local type, select, tostring, pairs = type, select, tostring, pairs
local sformat = string.format
local getinfo = debug.getinfo

local M = {
    DEBUG = 10,
    INFO = 20,
    WARNING = 30,
    ERROR = 40,
    CRITICAL = 50,
}

local cjson_encode
local function extra_json(t)
    if not cjson_encode then
        local cjson = require("cjson.safe")
        cjson_encode = cjson.encode
    end
    local parts, n = {}, 0
    for k, v in pairs(t) do
        local ks = cjson_encode(tostring(k))
        local vs = cjson_encode(v)
        if ks and vs then
            n = n + 1
            parts[n] = ks .. ": " .. vs
        end
    end
    return table.concat(parts, ", ")
end

local Logger = {}
Logger.__index = Logger

local function write(self, level, depth, exc_info, fmt, ...)
    local name = self.name
    if C.bp_log_enabled(name, level) == 0 then
        return
    end
    local n = select("#", ...)
    local extra
    local msg
    if n > 0 and type(select(n, ...)) == "table" then
        extra = extra_json(select(n, ...))
        n = n - 1
    end
    if n > 0 then
        local ok, s = pcall(sformat, tostring(fmt), ...)
        msg = ok and s or (tostring(fmt) .. " (bad log format: " .. tostring(s) .. ")")
    else
        msg = tostring(fmt)
    end
    local info = getinfo(depth, "Sl")
    local module, line
    if info then
        local src = info.short_src
        module = src:match("([^/]+)%.lua$") or src
        line = info.currentline
    end
    C.bp_log_write(level, name, #name, msg, #msg, module, line or 0, exc_info, extra)
end

function Logger:debug(fmt, ...) write(self, 10, 3, nil, fmt, ...) end
function Logger:info(fmt, ...) write(self, 20, 3, nil, fmt, ...) end
function Logger:warning(fmt, ...) write(self, 30, 3, nil, fmt, ...) end
Logger.warn = Logger.warning
function Logger:error(fmt, ...) write(self, 40, 3, nil, fmt, ...) end
function Logger:critical(fmt, ...) write(self, 50, 3, nil, fmt, ...) end

--- Log at ERROR with `exc_info` holding `err`'s text and a traceback (or
--- `err.traceback` when the error carries one).
function Logger:exception(msg, err)
    local tb
    if type(err) == "table" and err.traceback then
        tb = err.traceback
    else
        tb = debug.traceback(err ~= nil and tostring(err) or "", 2)
    end
    write(self, 40, 3, tb, msg)
end

--- Log at `level` (a number or a name).
function Logger:log(level, fmt, ...)
    if type(level) == "string" then level = M.level_from_name(level) end
    write(self, level, 3, nil, fmt, ...)
end

function Logger:is_enabled_for(level)
    return C.bp_log_enabled(self.name, level) ~= 0
end

function Logger:set_level(level)
    if type(level) == "string" then level = M.level_from_name(level) end
    C.bp_log_set_level(self.name, level)
end

local loggers = {}

--- The logger called `name` (dotted; "" or nil for the root).
function M.get_logger(name)
    name = name or ""
    local l = loggers[name]
    if not l then
        l = setmetatable({ name = name }, Logger)
        loggers[name] = l
    end
    return l
end

--- A level number for a name such as "debug" or "WARNING"; raises for others.
function M.level_from_name(name)
    local n = C.bp_log_level_from_name(tostring(name))
    if n < 0 then
        error(sformat("unknown log level %q (expected DEBUG, INFO, WARNING, ERROR or CRITICAL)",
            tostring(name)), 2)
    end
    return n
end

function M.set_level(name, level)
    M.get_logger(name):set_level(level)
end

M.FORMAT_AUTO, M.FORMAT_JSON, M.FORMAT_TEXT = 0, 1, 2

function M.set_format(fmt)
    C.bp_log_set_format(fmt)
end

-- Module-level shortcuts on the root logger. (No tail calls anywhere here:
-- write() finds the caller's module and line three frames up.)
local root = M.get_logger("")
for f, level in pairs({ debug = 10, info = 20, warning = 30, error = 40, critical = 50 }) do
    M[f] = function(fmt, ...) write(root, level, 3, nil, fmt, ...) end
end

return M
