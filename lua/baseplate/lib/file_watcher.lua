-- Watch a file and keep a parsed copy in memory that is updated when the
-- file changes: Baseplate.py's baseplate.lib.file_watcher
-- (docs/lib-file-watcher.md).
--
--   local file_watcher = require("baseplate.lib.file_watcher")
--   local cjson = require("cjson")
--   local w = file_watcher.FileWatcher("/var/local/data.json",
--       function(f) return cjson.decode(f:read("a")) end)
--   local data = w:get_data()   -- raises WatchedFileNotAvailableError until a good read
--
-- The C core (include/baseplate/file_watcher.h) watches the file's directory
-- on the loop and reads the file off the loop when it changed; the parser
-- runs here, on the first get_data() after a new read, never more often.
-- A parse error or a vanished file keeps the last good data.
local ffi = require("ffi")
local core = require("baseplate.core")

ffi.cdef([[
typedef struct bp_file_watch_s bp_file_watch_t;
int bp_file_watch_open(const char *path, size_t max_size, double interval, bp_file_watch_t **out);
int bp_file_watch_read_now(bp_file_watch_t *w);
uint64_t bp_file_watch_generation(const bp_file_watch_t *w);
int bp_file_watch_content(bp_file_watch_t *w, const char **data, size_t *len, double *mtime);
void bp_file_watch_release(bp_file_watch_t *w);
void bp_file_watch_close(bp_file_watch_t *w);
]])

local C = core.C
local type, tostring, setmetatable, getmetatable = type, tostring, setmetatable, getmetatable
local pcall, error = pcall, error
local byte, sub, find, gsub, char = string.byte, string.sub, string.find, string.gsub, string.char

local M = {}

--- How often the file's identity is checked besides the directory's events
--- (seconds), when the caller gives no backoff.
M.DEFAULT_FILEWATCHER_BACKOFF = 1.0
--- The largest file read (bytes); a larger one is an error like a vanished file.
M.DEFAULT_MAX_SIZE = 16 * 1024 * 1024

local NOT_LOADED = setmetatable({}, { __tostring = function() return "<not loaded>" end })
M.NOT_LOADED = NOT_LOADED

-- Errors ------------------------------------------------------------------------

local WatchedFileNotAvailableError = {}
WatchedFileNotAvailableError.__index = WatchedFileNotAvailableError
WatchedFileNotAvailableError.__tostring = function(self)
    return self.class .. ": " .. self.message
end
M.WatchedFileNotAvailableError = WatchedFileNotAvailableError

--- A WatchedFileNotAvailableError for `path` whose cause is `inner` (a
--- string or an error object); its message is "<path>: <inner>".
function M.new_not_available(path, inner)
    return setmetatable({
        class = "WatchedFileNotAvailableError",
        path = path,
        inner = inner,
        message = path .. ": " .. tostring(inner),
    }, WatchedFileNotAvailableError)
end

--- Whether `err` is a WatchedFileNotAvailableError.
function M.is_not_available(err)
    return type(err) == "table" and getmetatable(err) == WatchedFileNotAvailableError
end

-- Text mode ---------------------------------------------------------------------

local ENCODINGS = {
    ["utf-8"] = "utf-8", utf8 = "utf-8", ["utf_8"] = "utf-8", u8 = "utf-8",
    ascii = "ascii", ["us-ascii"] = "ascii",
    ["latin-1"] = "latin-1", latin1 = "latin-1", ["iso-8859-1"] = "latin-1", ["iso8859-1"] = "latin-1",
}
local NEWLINES = { [""] = true, ["\n"] = true, ["\r"] = true, ["\r\n"] = true }

-- Where `s` stops being valid UTF-8 (nil when it is).
local function utf8_error(s)
    local i, n = 1, #s
    while i <= n do
        local a = find(s, "[\128-\255]", i)
        if not a then return nil end
        local c = byte(s, a)
        local len, min
        if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
        elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
        elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
        else return a end
        local cp = c % (2 ^ (7 - len))
        for k = 1, len - 1 do
            local d = byte(s, a + k)
            if not d or d < 0x80 or d > 0xBF then return a end
            cp = cp * 64 + (d - 0x80)
        end
        if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return a end
        i = a + len
    end
    return nil
end

local function latin1_to_utf8(s)
    return (gsub(s, "[\128-\255]", function(c)
        local b = byte(c)
        return char(0xC0 + math.floor(b / 64), 0x80 + b % 64)
    end))
end

-- The text the parser sees: decoded as `encoding` says (UTF-8 by default),
-- newlines translated as Python's universal newlines mode does.
local function decode_text(self, raw)
    local enc = self._encoding
    if enc == "utf-8" then
        local at = utf8_error(raw)
        if at then error("'utf-8' codec can't decode byte at position " .. (at - 1), 0) end
    elseif enc == "ascii" then
        local at = find(raw, "[\128-\255]")
        if at then error("'ascii' codec can't decode byte at position " .. (at - 1), 0) end
    else
        raw = latin1_to_utf8(raw)
    end
    if self._newline == nil then
        raw = gsub(gsub(raw, "\r\n", "\n"), "\r", "\n")
    end
    return raw
end

-- The file object handed to the parser: the bytes read, with io's read and
-- lines (formats "a", "l", "L", "n" with or without "*", and a count).
local FileObject = {}
FileObject.__index = FileObject

local function new_file_object(name, text, sep)
    return setmetatable({ name = name, _text = text, _pos = 1, _sep = sep }, FileObject)
end

local function read_line(self, keep)
    local text, pos = self._text, self._pos
    if pos > #text then return nil end
    local sep = self._sep
    local s, e = find(text, sep, pos, true)
    if not s then
        self._pos = #text + 1
        return sub(text, pos)
    end
    self._pos = e + 1
    return sub(text, pos, keep and e or s - 1)
end

function FileObject:read(fmt)
    fmt = fmt or "l"
    if type(fmt) == "number" then
        local pos = self._pos
        if pos > #self._text and fmt > 0 then return nil end
        self._pos = pos + fmt
        return sub(self._text, pos, pos + fmt - 1)
    end
    fmt = gsub(fmt, "^%*", "")
    local f = sub(fmt, 1, 1)
    if f == "a" then
        local s = sub(self._text, self._pos)
        self._pos = #self._text + 1
        return s
    elseif f == "l" or f == "L" then
        return read_line(self, f == "L")
    elseif f == "n" then
        local s, e, num = find(self._text, "^%s*([%+%-]?[%w%.]+)", self._pos)
        if not s then return nil end
        self._pos = e + 1
        return tonumber(num)
    end
    error("bad argument #1 to 'read' (invalid format)", 2)
end

function FileObject:lines()
    return function() return read_line(self, false) end
end

function FileObject:seek(whence, offset)
    whence, offset = whence or "cur", offset or 0
    local base = whence == "set" and 0 or whence == "end" and #self._text or self._pos - 1
    self._pos = base + offset + 1
    return base + offset
end

function FileObject:close() return true end

-- The watcher ---------------------------------------------------------------------

local FileWatcher = {}
FileWatcher.__index = FileWatcher
M.FileWatcher_mt = FileWatcher

local out_cell = ffi.new("bp_file_watch_t *[1]")
local data_cell, len_cell, mtime_cell = ffi.new("const char *[1]"), ffi.new("size_t[1]"), ffi.new("double[1]")
local log

local function warn(fmt, ...)
    log = log or require("baseplate.log").get_logger("baseplate.lib.file_watcher")
    log:warning(fmt, ...)
end

-- The parser over new bytes (under a pcall: no closure, so that the path
-- that finds nothing new stays compiled).
local function parse_bytes(self, raw)
    local text = self._binary and raw or decode_text(self, raw)
    local sep = self._binary and "\n" or (self._newline ~= nil and self._newline ~= "" and self._newline) or "\n"
    return self._parser(new_file_object(self.path, text, sep), text)
end

-- Take what the core read since the last look: parse new bytes, note a failure.
local function refresh(self)
    local h = self._h
    if not h then return end
    local gen = C.bp_file_watch_generation(h)
    if gen == self._gen then return end
    self._gen = gen
    local rc = C.bp_file_watch_content(h, data_cell, len_cell, mtime_cell)
    if rc ~= core.OK then
        if rc == core.AGAIN then return end
        self._err = rc == core.ENOENT and "no such file" or core.strerror(rc)
        if self._data ~= NOT_LOADED then
            warn("%s: %s; keeping the data last read", self.path, self._err)
        end
        return
    end
    local raw = ffi.string(data_cell[0], len_cell[0])
    local mtime = mtime_cell[0]
    C.bp_file_watch_release(h)
    local ok, result = pcall(parse_bytes, self, raw)
    if ok then
        self._data, self._mtime, self._err = result, mtime, nil
    else
        -- The parser's message, not the file's text: that may be a secret.
        self._err = tostring(type(result) == "table" and (result.message or result) or result)
        warn("%s: could not parse the file (%s); keeping the data last read", self.path, self._err)
    end
end

local function check_args(path, parser, timeout, binary, encoding, newline, backoff, max_size)
    if type(path) ~= "string" or path == "" then error("FileWatcher: path must be a non-empty string", 3) end
    if type(parser) ~= "function" and not (type(parser) == "table" and getmetatable(parser)
        and getmetatable(parser).__call) then
        error("FileWatcher: parser must be a function", 3)
    end
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
        error("FileWatcher: timeout must be a non-negative number of seconds", 3)
    end
    if binary and encoding ~= nil then error("binary mode doesn't take an encoding argument", 3) end
    if binary and newline ~= nil then error("binary mode doesn't take a newline argument", 3) end
    if encoding ~= nil and not ENCODINGS[type(encoding) == "string" and encoding:lower() or ""] then
        error("unknown encoding: " .. tostring(encoding), 3)
    end
    if newline ~= nil and not NEWLINES[newline] then
        error("illegal newline value: " .. tostring(newline), 3)
    end
    if backoff ~= nil and (type(backoff) ~= "number" or not (backoff > 0)) then
        error("FileWatcher: backoff must be a positive number of seconds", 3)
    end
    if max_size ~= nil and (type(max_size) ~= "number" or max_size < 0 or max_size % 1 ~= 0) then
        error("FileWatcher: max_size must be a non-negative integer", 3)
    end
end

--- FileWatcher(path, parser[, timeout, binary, encoding, newline, backoff])
--- or FileWatcher(path, parser, { timeout=, binary=, encoding=, newline=,
--- backoff=, max_size= }). `parser(file, text)` gets a file object over the
--- bytes read (read/lines/seek) and the same text as a string, and returns
--- the data get_data() hands out.
function M.FileWatcher(path, parser, timeout, binary, encoding, newline, backoff)
    local max_size
    if type(timeout) == "table" then
        local o = timeout
        timeout, binary, encoding, newline, backoff, max_size =
            o.timeout, o.binary, o.encoding, o.newline, o.backoff, o.max_size
    end
    check_args(path, parser, timeout, binary, encoding, newline, backoff, max_size)
    local rc = C.bp_file_watch_open(path, max_size or M.DEFAULT_MAX_SIZE,
        backoff or M.DEFAULT_FILEWATCHER_BACKOFF, out_cell)
    if rc ~= core.OK then error("FileWatcher: " .. path .. ": " .. core.strerror(rc), 2) end
    local self = setmetatable({
        path = path,
        _h = ffi.gc(out_cell[0], C.bp_file_watch_close),
        _parser = parser,
        _binary = binary and true or false,
        _encoding = encoding and ENCODINGS[encoding:lower()] or "utf-8",
        _newline = newline,
        _data = NOT_LOADED,
        _mtime = 0,
        _err = "not loaded yet",
    }, FileWatcher)
    C.bp_file_watch_read_now(self._h)
    refresh(self)
    if self._data == NOT_LOADED and timeout and timeout > 0 then
        local runtime = require("baseplate.runtime")
        local deadline = runtime.now() + timeout
        local step = backoff or 0.1
        while self._data == NOT_LOADED and runtime.now() < deadline do
            runtime.sleep(math.min(step, math.max(deadline - runtime.now(), 0)))
            C.bp_file_watch_read_now(self._h)
            refresh(self)
        end
        if self._data == NOT_LOADED then
            self:close()
            error(M.new_not_available(path, "timed out after " .. timeout .. " seconds: " .. self._err), 2)
        end
    end
    return self
end
M.new = M.FileWatcher

--- The data the parser returned for the file's current contents; raises a
--- WatchedFileNotAvailableError while there has been no good read.
function FileWatcher:get_data()
    refresh(self)
    local data = self._data
    if data == NOT_LOADED then error(M.new_not_available(self.path, self._err), 2) end
    return data
end

--- get_data() and the file's mtime (seconds since the epoch) when it was read.
function FileWatcher:get_data_and_mtime()
    refresh(self)
    local data = self._data
    if data == NOT_LOADED then error(M.new_not_available(self.path, self._err), 2) end
    return data, self._mtime
end

--- get_data_and_mtime() without raising: true, data, mtime, or false and
--- the WatchedFileNotAvailableError (for callers on a hot path: no pcall).
function FileWatcher:try_get_data_and_mtime()
    refresh(self)
    local data = self._data
    if data == NOT_LOADED then return false, M.new_not_available(self.path, self._err) end
    return true, data, self._mtime
end

--- Stop watching (also done when the watcher is collected).
function FileWatcher:close()
    local h = self._h
    if h then
        self._h = nil
        C.bp_file_watch_close(ffi.gc(h, nil))
    end
end

-- The fake ------------------------------------------------------------------------

local FakeFileWatcher = {}
FakeFileWatcher.__index = FakeFileWatcher

--- A stand-in for tests: get_data() returns `.data` (settable), or raises
--- WatchedFileNotAvailableError("/fake-file-watcher", "no value set") while
--- it is nil; `.mtime` defaults to 1234.
function M.FakeFileWatcher(data, mtime)
    return setmetatable({ data = data, mtime = mtime or 1234, path = "/fake-file-watcher" }, FakeFileWatcher)
end

function FakeFileWatcher:get_data()
    if self.data == nil or self.data == NOT_LOADED then
        error(M.new_not_available("/fake-file-watcher", "no value set"), 2)
    end
    return self.data
end

function FakeFileWatcher:get_data_and_mtime()
    return self:get_data(), self.mtime
end

function FakeFileWatcher:try_get_data_and_mtime()
    if self.data == nil or self.data == NOT_LOADED then
        return false, M.new_not_available("/fake-file-watcher", "no value set")
    end
    return true, self.data, self.mtime
end

function FakeFileWatcher:close() end

return M
