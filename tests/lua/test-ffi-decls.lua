-- The Lua side's FFI declarations agree with the C headers, so that a drift
-- fails here rather than as a wrong value at run time:
--   * every function a module declares in ffi.cdef has the header's
--     prototype (return and parameter types, after LuaJIT resolves typedefs:
--     `size_t` and `unsigned long` are the same type, `int` and `unsigned`
--     are not; parameter names and spacing do not matter);
--   * every struct a module defines has C's members (names, order, types),
--     size and field offsets;
--   * every enum constant a module declares, and every number it mirrors
--     from a #define (status codes, log levels, tag types…), has C's value.
-- The C side comes from the compiler: `cc -E` of the headers for the
-- prototypes, and a program generated here and built against them for the
-- sizes, offsets and values.
local t = require("testlib")
local ffi = require("ffi")

local SOURCE_DIR = assert(os.getenv("BASEPLATE_SOURCE_DIR"), "BASEPLATE_SOURCE_DIR is set by ctest")
local CC = os.getenv("CC") or "cc"
-- The headers the Lua modules declare from: the public API, the private
-- header of the one internal function Lua calls (bp__json_buffer), and the
-- console that baseplate-shell exports.
local HEADERS = { "baseplate.h", "runtime.h", "cli/shell.h" }
-- Numbers the Lua modules mirror from #defines: module, field → C name.
local MIRRORS = {
    { "baseplate.core", "ABI_VERSION", "BP_ABI_VERSION" },
    { "baseplate.span", "EV_CREATED", "BP_OBSERVE_CREATED" },
    { "baseplate.span", "EV_START", "BP_OBSERVE_START" },
    { "baseplate.span", "EV_SET_TAG", "BP_OBSERVE_SET_TAG" },
    { "baseplate.span", "EV_INCR_TAG", "BP_OBSERVE_INCR_TAG" },
    { "baseplate.span", "EV_LOG", "BP_OBSERVE_LOG" },
    { "baseplate.span", "EV_FINISH", "BP_OBSERVE_FINISH" },
    { "baseplate.span", "EV_CHILD", "BP_OBSERVE_CHILD" },
    { "baseplate.span", "EV_RELEASED", "BP_OBSERVE_RELEASED" },
    { "baseplate.core", "OK", "BP_OK" },
    { "baseplate.core", "ERROR", "BP_ERROR" },
    { "baseplate.core", "AGAIN", "BP_AGAIN" },
    { "baseplate.core", "DECLINED", "BP_DECLINED" },
    { "baseplate.core", "ENOMEM", "BP_ENOMEM" },
    { "baseplate.core", "EINVAL", "BP_EINVAL" },
    { "baseplate.core", "ENOENT", "BP_ENOENT" },
    { "baseplate.core", "EIO", "BP_EIO" },
    { "baseplate.core", "ECLOSED", "BP_ECLOSED" },
    { "baseplate.core", "ETOOBIG", "BP_ETOOBIG" },
    { "baseplate.core", "ETIMEDOUT", "BP_ETIMEDOUT" },
    { "baseplate.core", "ECANCELED", "BP_ECANCELED" },
    { "baseplate.log", "DEBUG", "BP_LOG_DEBUG" },
    { "baseplate.log", "INFO", "BP_LOG_INFO" },
    { "baseplate.log", "WARNING", "BP_LOG_WARNING" },
    { "baseplate.log", "ERROR", "BP_LOG_ERROR" },
    { "baseplate.log", "CRITICAL", "BP_LOG_CRITICAL" },
    { "baseplate.log", "FORMAT_AUTO", "BP_LOG_FORMAT_AUTO" },
    { "baseplate.log", "FORMAT_JSON", "BP_LOG_FORMAT_JSON" },
    { "baseplate.log", "FORMAT_TEXT", "BP_LOG_FORMAT_TEXT" },
    { "baseplate.span", "SERVER", "BP_SPAN_SERVER" },
    { "baseplate.span", "CLIENT", "BP_SPAN_CLIENT" },
    { "baseplate.span", "LOCAL", "BP_SPAN_LOCAL" },
    { "baseplate.span", "TAG_STRING", "BP_TAG_STRING" },
    { "baseplate.span", "TAG_NUMBER", "BP_TAG_NUMBER" },
    { "baseplate.span", "TAG_BOOL", "BP_TAG_BOOL" },
    { "baseplate.lib.live_data.zookeeper", "CONNECTED", "BP_ZK_CONNECTED" },
    { "baseplate.lib.live_data.zookeeper", "DISCONNECTED", "BP_ZK_DISCONNECTED" },
    { "baseplate.lib.live_data.zookeeper", "EXPIRED", "BP_ZK_EXPIRED" },
    { "baseplate.lib.live_data.zookeeper", "AUTH_FAILED", "BP_ZK_AUTH_FAILED" },
    { "baseplate.lib.live_data.zookeeper", "CREATED", "BP_ZK_CREATED" },
    { "baseplate.lib.live_data.zookeeper", "DELETED", "BP_ZK_DELETED" },
    { "baseplate.lib.live_data.zookeeper", "CHANGED", "BP_ZK_CHANGED" },
    { "baseplate.lib.live_data.zookeeper", "CHILD", "BP_ZK_CHILD" },
    { "baseplate.lib.live_data.zookeeper", "RESYNC", "BP_ZK_RESYNC" },
    { "baseplate.lib.live_data.zookeeper", "GET", "BP_ZK_GET" },
    { "baseplate.lib.live_data.zookeeper", "EXISTS", "BP_ZK_EXISTS" },
    { "baseplate.lib.live_data.zookeeper", "SET", "BP_ZK_SET" },
    { "baseplate.lib.live_data.zookeeper", "CREATE", "BP_ZK_CREATE" },
    { "baseplate.lib.live_data.zookeeper", "DELETE", "BP_ZK_DELETE" },
    { "baseplate.clients.kafka_core", "ASSIGN", "BP_KAFKA_ASSIGN" },
    { "baseplate.clients.kafka_core", "REVOKE", "BP_KAFKA_REVOKE" },
    { "baseplate.clients.redis", "REPLY_STRING", "BP_REDIS_STRING" },
    { "baseplate.clients.redis", "REPLY_ARRAY", "BP_REDIS_ARRAY" },
    { "baseplate.clients.redis", "REPLY_INTEGER", "BP_REDIS_INTEGER" },
    { "baseplate.clients.redis", "REPLY_NIL", "BP_REDIS_NIL" },
    { "baseplate.clients.redis", "REPLY_STATUS", "BP_REDIS_STATUS" },
    { "baseplate.clients.redis", "REPLY_ERROR", "BP_REDIS_ERROR" },
    { "baseplate.clients.http", "FILTER_EXTERNAL", "BP_HTTP_FILTER_EXTERNAL" },
    { "baseplate.clients.http", "FILTER_INTERNAL", "BP_HTTP_FILTER_INTERNAL" },
    { "baseplate.clients.http", "ALLOW", "BP_HTTP_ALLOW" },
    { "baseplate.clients.http", "DENY", "BP_HTTP_DENY" },
    { "baseplate.clients.http", "FAIL_NONE", "BP_HTTP_FAIL_NONE" },
    { "baseplate.clients.http", "FAIL_CONNECT", "BP_HTTP_FAIL_CONNECT" },
    { "baseplate.clients.http", "FAIL_REFUSED", "BP_HTTP_FAIL_REFUSED" },
    { "baseplate.clients.http", "FAIL_TIMEOUT", "BP_HTTP_FAIL_TIMEOUT" },
    { "baseplate.clients.http", "FAIL_TOOBIG", "BP_HTTP_FAIL_TOOBIG" },
    { "baseplate.clients.http", "FAIL_OTHER", "BP_HTTP_FAIL_OTHER" },
    { "baseplate.clients.memcache", "SET", "BP_MEMCACHE_SET" },
    { "baseplate.clients.memcache", "ADD", "BP_MEMCACHE_ADD" },
    { "baseplate.clients.memcache", "REPLACE", "BP_MEMCACHE_REPLACE" },
    { "baseplate.clients.memcache", "APPEND", "BP_MEMCACHE_APPEND" },
    { "baseplate.clients.memcache", "PREPEND", "BP_MEMCACHE_PREPEND" },
    { "baseplate.clients.memcache", "CAS", "BP_MEMCACHE_CAS" },
    { "baseplate.clients.memcache", "REPLY_STORED", "BP_MEMCACHE_STORED" },
    { "baseplate.clients.memcache", "REPLY_NOT_STORED", "BP_MEMCACHE_NOT_STORED" },
    { "baseplate.clients.memcache", "REPLY_EXISTS", "BP_MEMCACHE_EXISTS" },
    { "baseplate.clients.memcache", "REPLY_NOT_FOUND", "BP_MEMCACHE_NOT_FOUND" },
    { "baseplate.clients.memcache", "REPLY_DELETED", "BP_MEMCACHE_DELETED" },
    { "baseplate.clients.memcache", "REPLY_TOUCHED", "BP_MEMCACHE_TOUCHED" },
    { "baseplate.clients.memcache", "REPLY_OK", "BP_MEMCACHE_OK" },
    { "baseplate.clients.memcache", "REPLY_END", "BP_MEMCACHE_END" },
    { "baseplate.clients.memcache", "REPLY_NUMBER", "BP_MEMCACHE_NUMBER" },
    { "baseplate.clients.memcache", "REPLY_ERROR", "BP_MEMCACHE_ERROR" },
    { "baseplate.clients.memcache", "REPLY_CLIENT_ERROR", "BP_MEMCACHE_CLIENT_ERROR" },
    { "baseplate.clients.memcache", "REPLY_SERVER_ERROR", "BP_MEMCACHE_SERVER_ERROR" },
    { "baseplate.clients.memcache", "REPLY_VERSION", "BP_MEMCACHE_VERSION" },
    { "baseplate.clients.memcache", "REPLY_NOREPLY", "BP_MEMCACHE_NOREPLY" },
    { "baseplate.clients.memcache", "MAX_KEY_LENGTH", "BP_MEMCACHE_MAX_KEY" },
    { "baseplate.clients.memcache", "DEFAULT_MAX_ITEM_SIZE", "BP_MEMCACHE_DEFAULT_MAX_ITEM" },
}

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local function squeeze(s)
    return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- Run a shell command: whether it exited 0, and its output.
local function command(cmd)
    local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"exit $?\""))
    local out = p:read("*a")
    p:close()
    local body, code = out:match("^(.-)exit (%d+)\n$")
    return code == "0", body
end

local CFLAGS
do
    local ok, pc = command("pkg-config --cflags luajit libuv")
    CFLAGS = table.concat({
        "-std=gnu11",
        "-I" .. SOURCE_DIR .. "/include",
        "-I" .. SOURCE_DIR .. "/src",
        ok and squeeze(pc) or "-I/usr/include/luajit-2.1",
    }, " ")
end

local tmp = os.tmpname()
os.remove(tmp)
assert(command("mkdir -p '" .. tmp .. "'"))

-- --- C text into declarations --------------------------------------------------

-- Split `text` at each `sep` outside braces, parentheses and brackets.
local function split_outside(text, sep)
    local out, depth, start = {}, 0, 1
    for i = 1, #text do
        local c = text:sub(i, i)
        if c == "{" or c == "(" or c == "[" then
            depth = depth + 1
        elseif c == "}" or c == ")" or c == "]" then
            depth = depth - 1
        elseif c == sep and depth == 0 then
            out[#out + 1] = squeeze(text:sub(start, i - 1))
            start = i + 1
        end
    end
    out[#out + 1] = squeeze(text:sub(start))
    return out
end

-- The top-level declarations of C text (without comments).
local function declarations(text)
    local out = {}
    for _, d in ipairs(split_outside(text, ";")) do
        if d ~= "" then out[#out + 1] = d end
    end
    return out
end

local function split_commas(s)
    return split_outside(s, ",")
end

-- A function declaration: name, return type text, parameter texts; nil for
-- anything else.
local function prototype(decl)
    decl = squeeze(decl:gsub("__attribute__%s*%b()", ""):gsub("^extern ", ""))
    if decl:match("^typedef ") or decl:find("{", 1, true) then return nil end
    local ret, name, params = decl:match("^(.-)([%a_][%w_]*)%s*(%b())$")
    if not name or ret == "" then return nil end
    params = params:sub(2, -2)
    local list = {}
    if squeeze(params) ~= "void" and squeeze(params) ~= "" then list = split_commas(params) end
    return name, ret, list
end

-- A type in LuaJIT's canonical spelling (typedefs resolved), from a
-- parameter that may carry a name, or a member's type. A parameter declared
-- as an array is a pointer.
local function canonical(text, is_param)
    if text == "..." then return text end
    text = text:gsub("%(%s*%*%s*[%a_][%w_]*%s*%)", "(*)") -- a function pointer's name
    local suffix = ""
    if is_param and text:match("%b[]$") then
        text, suffix = text:gsub("%s*%b[]$", ""), " *"
    end
    local ok, ct = pcall(ffi.typeof, text .. suffix)
    if not ok then
        local stripped = text:match("^(.-)[%a_][%w_]*$")
        if stripped and stripped ~= "" then ok, ct = pcall(ffi.typeof, stripped .. suffix) end
    end
    if not ok then return nil, "type not known to the FFI: " .. text end
    return (tostring(ct):match("^ctype<(.*)>$"))
end

local function signature(ret, params)
    local r, err = canonical(ret, false)
    if not r then return nil, err end
    local ps = {}
    for i, p in ipairs(params) do
        local c, perr = canonical(p, true)
        if not c then return nil, perr end
        ps[i] = c
    end
    return r .. " (" .. table.concat(ps, ", ") .. ")"
end

-- A struct definition: its C name ("struct tag", or the typedef's name) and
-- its members in order, each { name =, type = } with the type spelt as an
-- abstract declarator ("const char *", "char [256]", "int (*)(int)"); nil
-- for anything else.
local function struct_definition(decl)
    if not (decl:match("^struct ") or decl:match("^typedef struct")) or not decl:find("{", 1, true) then
        return nil
    end
    local tag = decl:match("^typedef struct ([%a_][%w_]*)") or decl:match("^struct ([%a_][%w_]*)")
    local alias = decl:match("^typedef .*}%s*([%a_][%w_]*)$")
    local cname = alias or ("struct " .. tag)
    local fields = {}
    for _, m in ipairs(declarations(decl:match("%b{}"):sub(2, -2))) do
        assert(not m:find("{", 1, true), cname .. ": a nested struct or union")
        assert(#split_commas(m) == 1, cname .. ": one member per declaration: " .. m)
        local fname = m:match("%(%s*%*%s*([%a_][%w_]*)%s*%)") -- a function pointer
        local ftype
        if fname then
            ftype = m:gsub("%(%s*%*%s*" .. fname .. "%s*%)", "(*)")
        else
            local base, arrays = m, ""
            while base:match("%b[]$") do
                local b, a = base:match("^(.-)%s*(%b[])$")
                base, arrays = b, a .. arrays
            end
            fname = base:match("([%a_][%w_]*)$")
            ftype = base:sub(1, #base - #fname) .. arrays
        end
        fields[#fields + 1] = { name = fname, type = squeeze(ftype) }
    end
    return cname, fields, tag and ("struct " .. tag)
end

-- --- the Lua side ---------------------------------------------------------------

local lua_files = {}
do
    local p = assert(io.popen("cd '" .. SOURCE_DIR .. "/lua' && find baseplate -name '*.lua' | sort"))
    for f in p:lines() do lua_files[#lua_files + 1] = f end
    p:close()
end

local cdefs = {} -- { file =, text = }
for _, f in ipairs(lua_files) do
    local src = read(SOURCE_DIR .. "/lua/" .. f)
    for _, body in src:gmatch("ffi%.cdef%(%s*%[(=*)%[(.-)%]%1%]%s*%)") do
        cdefs[#cdefs + 1] = { file = f, text = body:gsub("/%*.-%*/", ""):gsub("//[^\n]*", "") }
    end
    if src:find("ffi.cdef", 1, true) and not src:find("ffi%.cdef%(%s*%[=*%[") then
        error(f .. ": an ffi.cdef this test cannot read (use ffi.cdef([[ ... ]]))")
    end
end

t.test("every module with declarations loads", function()
    for _, f in ipairs(lua_files) do
        local mod = f:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
        local ok, err = pcall(require, mod)
        t.ok(ok, mod .. ": " .. tostring(err))
    end
    t.ok(#cdefs >= 10, "found the cdefs (" .. #cdefs .. ")")
end)

local lua_functions, lua_structs, lua_enums = {}, {}, {}
for _, cdef in ipairs(cdefs) do
    for _, d in ipairs(declarations(cdef.text)) do
        local name, ret, params = prototype(d)
        if name then
            lua_functions[#lua_functions + 1] = { file = cdef.file, name = name, ret = ret, params = params }
        elseif d:match("^enum ") or d:match("^typedef enum ") then
            for item in d:match("%b{}"):sub(2, -2):gmatch("[^,]+") do
                local k = squeeze(item):match("^([%a_][%w_]*)")
                if k then lua_enums[#lua_enums + 1] = { file = cdef.file, name = k } end
            end
        else
            local cname, fields = struct_definition(d)
            if cname then
                lua_structs[#lua_structs + 1] = { file = cdef.file, cname = cname, fields = fields }
            end
        end
    end
end

-- --- the C side -------------------------------------------------------------------

local c_functions, c_structs = {}, {}
t.test("the headers preprocess", function()
    local src = tmp .. "/headers.c"
    local f = assert(io.open(src, "w"))
    for _, h in ipairs(HEADERS) do f:write('#include "', h, '"\n') end
    f:close()
    local ok, out = command(CC .. " -E " .. CFLAGS .. " " .. src)
    t.ok(ok, out)
    -- Only what our own headers declare (the line markers say which file).
    local ours, keep = {}, false
    for line in out:gmatch("[^\n]*") do
        local file = line:match('^# %d+ "([^"]*)"')
        if file then
            keep = file:find(SOURCE_DIR .. "/include/", 1, true) == 1
                or file:find(SOURCE_DIR .. "/src/", 1, true) == 1
        elseif keep then
            ours[#ours + 1] = line
        end
    end
    for _, d in ipairs(declarations(table.concat(ours, "\n"))) do
        local name, ret, params = prototype(d)
        local cname, fields, tagged = struct_definition(d)
        if name then
            c_functions[name] = { ret = ret, params = params }
        elseif cname then
            c_structs[cname] = fields
            if tagged then c_structs[tagged] = fields end
        end
    end
    -- "typedef struct tag alias;" names a struct defined elsewhere
    for _, d in ipairs(declarations(table.concat(ours, "\n"))) do
        local tag, alias = d:match("^typedef struct ([%a_][%w_]*) ([%a_][%w_]*)$")
        if tag and c_structs["struct " .. tag] then c_structs[alias] = c_structs["struct " .. tag] end
    end
    t.ok(c_functions.bp_strerror, "found bp_strerror in the headers")
end)

t.test("every function declared in Lua has the header's prototype", function()
    local bad = {}
    for _, fn in ipairs(lua_functions) do
        if fn.name:match("^bp_") then
            local c = c_functions[fn.name]
            if not c then
                bad[#bad + 1] = fn.file .. ": " .. fn.name .. " is declared in no header"
            else
                local lsig, lerr = signature(fn.ret, fn.params)
                local csig, cerr = signature(c.ret, c.params)
                if not lsig or not csig then
                    bad[#bad + 1] = fn.file .. ": " .. fn.name .. ": " .. tostring(lerr or cerr)
                elseif lsig ~= csig then
                    bad[#bad + 1] = string.format("%s: %s\n    Lua: %s\n    C:   %s", fn.file, fn.name, lsig, csig)
                end
            end
        end
    end
    t.ok(#bad == 0, "\n  " .. table.concat(bad, "\n  "))
    t.ok(#lua_functions > 100, "compared " .. #lua_functions .. " functions")
end)

-- One C program prints what the compiler says: sizes, offsets and values.
local c_values = {}
t.test("a program built against the headers reports sizes, offsets and constants", function()
    local lines = {}
    local function emit(key, expr)
        lines[#lines + 1] = string.format('  printf("%%s %%lld\\n", "%s", (long long)(%s));', key, expr)
    end
    for _, s in ipairs(lua_structs) do
        emit("sizeof " .. s.cname, "sizeof(" .. s.cname .. ")")
        for _, field in ipairs(s.fields) do
            emit("offsetof " .. s.cname .. " " .. field.name, "offsetof(" .. s.cname .. ", " .. field.name .. ")")
        end
    end
    for _, e in ipairs(lua_enums) do emit(e.name, e.name) end
    for _, m in ipairs(MIRRORS) do emit(m[3], m[3]) end
    local src = tmp .. "/layout.c"
    local f = assert(io.open(src, "w"))
    f:write("#include <stddef.h>\n#include <stdio.h>\n")
    for _, h in ipairs(HEADERS) do f:write('#include "', h, '"\n') end
    f:write("int main(void) {\n", table.concat(lines, "\n"), "\n  return 0;\n}\n")
    f:close()
    local ok, out = command(CC .. " " .. CFLAGS .. " -o " .. tmp .. "/layout " .. src)
    local errors = {}
    for line in out:gmatch("[^\n]+") do
        if line:find("error", 1, true) then errors[#errors + 1] = line end
    end
    t.ok(ok, "the generated program compiles (a member Lua names that C has not?):\n"
        .. table.concat(errors, "\n"))
    ok, out = command(tmp .. "/layout")
    t.ok(ok, out)
    for key, v in out:gmatch("([^\n]-) (%-?%d+)\n") do c_values[key] = tonumber(v) end
end)

t.test("every struct defined in Lua has C's members, size and field offsets", function()
    t.ok(next(c_values) ~= nil, "no numbers from the C program (see above)")
    local bad, n = {}, 0
    local function say(s, fmt, ...)
        bad[#bad + 1] = string.format("%s: %s: " .. fmt, s.file, s.cname, ...)
    end
    for _, s in ipairs(lua_structs) do
        local c = c_structs[s.cname]
        if not c then
            say(s, "defined in no header")
        else
            local lnames, cnames = {}, {}
            for i, f in ipairs(s.fields) do lnames[i] = f.name end
            for i, f in ipairs(c) do cnames[i] = f.name end
            if table.concat(lnames, ", ") ~= table.concat(cnames, ", ") then
                say(s, "members (%s) in Lua, (%s) in C", table.concat(lnames, ", "), table.concat(cnames, ", "))
            end
            for i, f in ipairs(s.fields) do
                local cf = c[i]
                if cf and cf.name == f.name then
                    local lt, lerr = canonical(f.type)
                    local ct, cerr = canonical(cf.type)
                    if lt ~= ct or not lt then
                        say(s, "member %s is %s in Lua, %s in C", f.name, tostring(lt or lerr), tostring(ct or cerr))
                    end
                end
            end
        end
        local want, got = c_values["sizeof " .. s.cname], ffi.sizeof(s.cname)
        if got ~= want then say(s, "sizeof is %s in Lua, %s in C", tostring(got), tostring(want)) end
        for _, f in ipairs(s.fields) do
            n = n + 1
            want, got = c_values["offsetof " .. s.cname .. " " .. f.name], ffi.offsetof(s.cname, f.name)
            if got ~= want then
                say(s, "offsetof %s is %s in Lua, %s in C", f.name, tostring(got), tostring(want))
            end
        end
    end
    t.ok(#bad == 0, "\n  " .. table.concat(bad, "\n  "))
    t.ok(#lua_structs >= 5 and n >= 20, #lua_structs .. " structs, " .. n .. " fields")
end)

t.test("every enum constant declared in Lua has C's value", function()
    local bad = {}
    for _, e in ipairs(lua_enums) do
        local got, want = tonumber(ffi.C[e.name]), c_values[e.name]
        if got ~= want then
            bad[#bad + 1] = string.format("%s: %s is %s in Lua, %s in C", e.file, e.name, tostring(got), tostring(want))
        end
    end
    t.ok(#bad == 0, "\n  " .. table.concat(bad, "\n  "))
    t.ok(#lua_enums >= 5, #lua_enums .. " constants")
end)

t.test("every number Lua mirrors from a #define has C's value", function()
    local bad = {}
    for _, m in ipairs(MIRRORS) do
        local got, want = require(m[1])[m[2]], c_values[m[3]]
        if got ~= want then
            bad[#bad + 1] = string.format("%s.%s is %s, %s is %s", m[1], m[2], tostring(got), m[3], tostring(want))
        end
    end
    t.ok(#bad == 0, "\n  " .. table.concat(bad, "\n  "))
end)

io.write(string.format("compared %d prototypes, %d structs, %d enum constants, %d mirrored numbers\n",
    #lua_functions, #lua_structs, #lua_enums, #MIRRORS))
command("rm -rf '" .. tmp .. "'")
t.done()
