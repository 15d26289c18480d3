-- INI configuration files (include/baseplate/ini.h) as Lua tables.
--
--   local ini = require("baseplate.ini")
--   local file = ini.load("helloworld.ini")     -- raises with "FILE:LINE: reason"
--   local app_config = file:section("app:main") -- table of strings, or nil
local ffi = require("ffi")
local core = require("baseplate.core")

ffi.cdef([[
typedef struct bp_ini_s bp_ini_t;
typedef struct bp_section_s bp_section_t;
int bp_ini_load(const char *path, bp_ini_t **out, char *err, size_t errlen);
int bp_ini_parse(const char *text, size_t len, const char *name, bp_ini_t **out,
                 char *err, size_t errlen);
void bp_ini_free(bp_ini_t *ini);
const char *bp_ini_path(const bp_ini_t *ini);
int bp_ini_section_count(const bp_ini_t *ini);
const bp_section_t *bp_ini_section_at(const bp_ini_t *ini, int i);
const bp_section_t *bp_ini_section(const bp_ini_t *ini, const char *name);
const char *bp_section_name(const bp_section_t *section);
const char *bp_section_get(const bp_section_t *section, const char *key);
int bp_section_count(const bp_section_t *section);
int bp_section_own_count(const bp_section_t *section);
int bp_section_item(const bp_section_t *section, int i, const char **key, const char **value);
int bp_section_line(const bp_section_t *section, const char *key);
]])

local C = core.C
local ffi_string = ffi.string

local M = {}

local File = {}
File.__index = File

local key_cell = ffi.new("const char *[1]")
local value_cell = ffi.new("const char *[1]")

local function wrap(ptr)
    return setmetatable({ c = ffi.gc(ptr, C.bp_ini_free), path = ffi_string(C.bp_ini_path(ptr)) }, File)
end

--- Load and parse a file. Raises a string "PATH:LINE: reason" on error.
function M.load(path)
    local out = ffi.new("bp_ini_t *[1]")
    local rc = C.bp_ini_load(path, out, core.errbuf, core.errbuf_size)
    if rc ~= 0 then error(core.errmsg(), 0) end
    return wrap(out[0])
end

--- Parse INI text; `name` stands for the path in messages.
function M.parse(text, name)
    local out = ffi.new("bp_ini_t *[1]")
    local rc = C.bp_ini_parse(text, #text, name or "<string>", out, core.errbuf, core.errbuf_size)
    if rc ~= 0 then error(core.errmsg(), 0) end
    return wrap(out[0])
end

--- The C section pointer (for C module factories), or nil.
function File:section_ptr(name)
    local s = C.bp_ini_section(self.c, name)
    if s == nil then return nil end
    return s
end

--- The section's keys and values (DEFAULT merged in, unless `own_only`) as a
--- table, or nil when there is no such section.
function File:section(name, own_only)
    local s = C.bp_ini_section(self.c, name)
    if s == nil then return nil end
    local t = {}
    local n = own_only and C.bp_section_own_count(s) or C.bp_section_count(s)
    for i = 0, n - 1 do
        C.bp_section_item(s, i, key_cell, value_cell)
        t[ffi_string(key_cell[0])] = ffi_string(value_cell[0])
    end
    return t
end

--- The line a key of a section was set on (0 when unknown).
function File:line_of(section, key)
    local s = C.bp_ini_section(self.c, section)
    if s == nil then return 0 end
    return C.bp_section_line(s, key)
end

--- Names of all sections in file order (DEFAULT excluded).
function File:section_names()
    local names = {}
    for i = 0, C.bp_ini_section_count(self.c) - 1 do
        names[#names + 1] = ffi_string(C.bp_section_name(C.bp_ini_section_at(self.c, i)))
    end
    return names
end

return M
