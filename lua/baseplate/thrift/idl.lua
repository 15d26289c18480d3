-- Thrift IDL files, read by Debian's thrift compiler (its JSON generator
-- describes a program completely), turned into a schema the codec runs on.
--
--   local idl = require("baseplate.thrift.idl")
--   local schema = idl.load("service.thrift", { "includes/" })
--   local User = schema:struct("User")             -- or "shared.User"
--   local bytes = User:encode({ id = 1 }, "compact")
--   local get = schema:service("Users").methods.get_user   -- .args, .result
--
-- load() runs `thrift -r --gen json` once per call (start-up, never on a
-- request) into a private temporary directory and removes it afterwards.
-- See docs/thrift.md for the schema's shape and the type mapping.
local ffi = require("ffi")
local cjson = require("cjson")
local codec = require("baseplate.thrift.codec")

local M = {}

--- The compiler run by load(): $BASEPLATE_THRIFT, or `thrift` on PATH.
M.compiler = os.getenv("BASEPLATE_THRIFT") or "thrift"

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function exec(cmd)
    local rc = os.execute(cmd)
    return rc == 0 or rc == true
end

local function basename_program(path)
    return (path:match("([^/]+)$") or path):gsub("%.thrift$", "")
end

-- Runs the compiler; returns the decoded JSON of every program by name.
local function compile_idl(path, include_dirs)
    local pipe = io.popen("mktemp -d 2>/dev/null")
    local dir = pipe and pipe:read("*l")
    if pipe then pipe:close() end
    if not dir or dir == "" then
        error("thrift IDL " .. path .. ": cannot create a temporary directory", 3)
    end
    local args = { shell_quote(M.compiler), "-r", "--gen", "json", "-o", shell_quote(dir) }
    for _, d in ipairs(include_dirs or {}) do
        args[#args + 1] = "-I"
        args[#args + 1] = shell_quote(d)
    end
    args[#args + 1] = shell_quote(path)
    local log = dir .. "/compiler.log"
    local ok = exec(table.concat(args, " ") .. " >" .. shell_quote(log) .. " 2>&1")
    local out = read_file(log) or ""
    local programs, err = {}, nil
    if ok then
        local files = {}
        local ls = io.popen("ls " .. shell_quote(dir .. "/gen-json") .. " 2>/dev/null")
        if ls then
            for file in ls:lines() do files[#files + 1] = file end
            ls:close()
        end
        for _, file in ipairs(files) do
            local name = file:match("^(.+)%.json$")
            if name then
                local text = read_file(dir .. "/gen-json/" .. file)
                local decoded_ok, j = pcall(cjson.decode, text or "")
                if not decoded_ok then
                    -- The generator writes a map constant with struct keys
                    -- as an object with object keys, which is not JSON.
                    err = "the compiler's description of " .. name .. " is not valid JSON (" .. tostring(j)
                        .. "); a constant map with non-scalar keys cannot be read"
                    break
                end
                programs[name] = j
            end
        end
    end
    exec("rm -rf " .. shell_quote(dir))
    if not ok then
        out = out:gsub("%s+$", "")
        if out == "" or out:find("not found", 1, true) then
            out = (out ~= "" and out .. "; " or "") .. "is " .. M.compiler .. " (Debian's thrift-compiler) installed?"
        end
        error("thrift IDL " .. path .. ": " .. out, 3)
    end
    if err then error("thrift IDL " .. path .. ": " .. err, 3) end
    return programs
end

local base_types = {
    bool = "bool", byte = "byte", i8 = "byte", i16 = "i16", i32 = "i32", i64 = "i64",
    double = "double", string = "string", binary = "binary",
}

local Schema = {}
Schema.__index = Schema

-- "Name" in program `prog`, or "other.Name": the qualified name.
local function qualify(prog, name)
    if name:find(".", 1, true) then return name end
    return prog .. "." .. name
end

local function make_type(self, prog, type_id, t)
    local base = base_types[type_id]
    if base then return codec.base_type(base) end
    if type_id == "list" or type_id == "set" then
        return { kind = type_id, elem = make_type(self, prog, t.elemTypeId, t.elemType) }
    elseif type_id == "map" then
        return { kind = "map", key = make_type(self, prog, t.keyTypeId, t.keyType),
                 value = make_type(self, prog, t.valueTypeId, t.valueType) }
    elseif type_id == "struct" or type_id == "union" or type_id == "exception" then
        local q = qualify(prog, t.class)
        local s = self.structs[q]
        if not s then error("thrift IDL " .. self.path .. ": unknown type " .. q, 0) end
        return { kind = "struct", struct = s }
    end
    error("thrift IDL " .. self.path .. ": unsupported type " .. tostring(type_id), 0)
end

local int64_t = ffi.typeof("int64_t")

-- A constant or default from the compiler's JSON, as the codec decodes
-- values of that type.
local function make_value(ty, v)
    local kind = ty.kind
    if v == nil or v == cjson.null then return nil end
    if kind == "bool" then
        return v ~= 0 and v ~= false
    elseif kind == "i64" then
        return int64_t(v)
    elseif kind == "byte" or kind == "i16" or kind == "i32" or kind == "double" then
        return tonumber(v)
    elseif kind == "string" or kind == "binary" then
        return tostring(v)
    elseif kind == "list" or kind == "set" then
        local out = {}
        for i, x in ipairs(v) do out[i] = make_value(ty.elem, x) end
        return out
    elseif kind == "map" then
        local out = {}
        for k, x in pairs(v) do
            local key = make_value(ty.key, (ty.key.kind ~= "string" and ty.key.kind ~= "binary") and tonumber(k) or k)
            if key ~= nil then out[key] = make_value(ty.value, x) end
        end
        return out
    elseif kind == "struct" then
        local out = {}
        for _, f in ipairs(ty.struct.fields) do
            if v[f.name] ~= nil then out[f.name] = make_value(f.type, v[f.name]) end
        end
        return out
    end
    return v
end

local function set_defaults(fields)
    for _, f in ipairs(fields) do
        if f.json_default ~= nil then f.default = make_value(f.type, f.json_default) end
        f.json_default = nil
    end
    return fields
end

local requiredness = { required = "required", optional = "optional", req_out = "default" }

local function make_fields(self, prog, list, owner)
    local fields = {}
    for _, jf in ipairs(list) do
        local f = {
            id = jf.key, name = jf.name, required = requiredness[jf.required] or "default",
            type = make_type(self, prog, jf.typeId, jf.type),
        }
        f.json_default = jf.default
        fields[#fields + 1] = f
    end
    table.sort(fields, function(a, b) return a.id < b.id end)
    for i = 2, #fields do
        if fields[i].id == fields[i - 1].id then
            error("thrift IDL " .. self.path .. ": " .. owner .. " has two fields with id " .. fields[i].id, 0)
        end
    end
    return fields
end

--- Reads the IDL at `path` (with `include_dirs` searched for includes) and
--- returns its schema. Raises an error naming the file and the compiler's
--- message when the IDL is invalid or the compiler is missing.
function M.load(path, include_dirs)
    if type(path) ~= "string" then error("idl.load: path must be a string", 2) end
    if include_dirs ~= nil and type(include_dirs) ~= "table" then
        error("idl.load: include_dirs must be a list of directories", 2)
    end
    local programs = compile_idl(path, include_dirs)
    local main = basename_program(path)
    if not programs[main] then error("thrift IDL " .. path .. ": the compiler wrote no description of it", 2) end
    local self = setmetatable({
        path = path, program = main, programs = {}, structs = {}, enums = {}, consts = {},
        typedefs = {}, services = {},
    }, Schema)

    -- Every struct first (they refer to each other, and to themselves).
    local all = {}
    for name, j in pairs(programs) do
        for _, js in ipairs(j.structs or {}) do
            local kind = js.isUnion and "union" or (js.isException and "exception" or "struct")
            local s = { name = name .. "." .. js.name, kind = kind }
            self.structs[s.name] = s
            all[#all + 1] = { prog = name, json = js, desc = s }
        end
    end
    for _, e in ipairs(all) do e.desc.fields = make_fields(self, e.prog, e.json.fields or {}, e.desc.name) end
    -- Defaults once every struct has its fields (a default may be a struct).
    for _, e in ipairs(all) do set_defaults(e.desc.fields) end

    for name, j in pairs(programs) do
        self.programs[name] = { name = name, namespaces = j.namespaces or {}, includes = j.includes or {} }
        for _, je in ipairs(j.enums or {}) do
            local members = {}
            for _, m in ipairs(je.members or {}) do members[m.name] = m.value end
            self.enums[name .. "." .. je.name] = members
        end
        for _, jt in ipairs(j.typedefs or {}) do
            self.typedefs[name .. "." .. jt.name] = make_type(self, name, jt.typeId, jt.type)
        end
        for _, jc in ipairs(j.constants or {}) do
            self.consts[name .. "." .. jc.name] = make_value(make_type(self, name, jc.typeId, jc.type), jc.value)
        end
    end

    -- Services, parents before children (a parent may live in an include).
    local pending = {}
    for name, j in pairs(programs) do
        for _, jsvc in ipairs(j.services or {}) do pending[name .. "." .. jsvc.name] = { prog = name, json = jsvc } end
    end
    local function build(q)
        if self.services[q] then return self.services[q] end
        local p = pending[q]
        if not p then error("thrift IDL " .. path .. ": unknown service " .. q, 0) end
        pending[q] = nil
        local svc = { name = q, methods = {} }
        if p.json.extends then
            svc.extends = build(qualify(p.prog, p.json.extends))
            for mname, m in pairs(svc.extends.methods) do svc.methods[mname] = m end
        end
        local short = p.json.name
        for _, jf in ipairs(p.json.functions or {}) do
            local m = { name = jf.name, oneway = jf.oneway and true or false, service = q }
            m.args = { name = short .. "_" .. jf.name .. "_args", kind = "struct",
                       fields = set_defaults(make_fields(self, p.prog, jf.arguments or {}, q .. "." .. jf.name)) }
            local exceptions = make_fields(self, p.prog, jf.exceptions or {}, q .. "." .. jf.name)
            m.exceptions = {}
            for _, f in ipairs(exceptions) do
                f.required = "optional"
                m.exceptions[#m.exceptions + 1] = f
            end
            if not m.oneway then
                local fields = {}
                if jf.returnTypeId ~= "void" then
                    m.returns = make_type(self, p.prog, jf.returnTypeId, jf.returnType)
                    fields[1] = { id = 0, name = "success", required = "optional", type = m.returns }
                end
                for _, f in ipairs(exceptions) do fields[#fields + 1] = f end
                m.result = { name = short .. "_" .. jf.name .. "_result", kind = "struct", fields = fields }
            end
            svc.methods[jf.name] = m
        end
        self.services[q] = svc
        return svc
    end
    for q in pairs(pending) do build(q) end

    -- One compiled codec for every struct, args and result of the schema.
    local descs = {}
    for _, s in pairs(self.structs) do descs[#descs + 1] = s end
    for _, svc in pairs(self.services) do
        for _, m in pairs(svc.methods) do
            if m.service == svc.name then
                descs[#descs + 1] = m.args
                if m.result then descs[#descs + 1] = m.result end
            end
        end
    end
    local handles = codec.compile(descs)
    for q, s in pairs(self.structs) do self.structs[q] = handles[s] end
    for _, svc in pairs(self.services) do
        for _, m in pairs(svc.methods) do
            if m.service == svc.name then
                m.args = handles[m.args]
                if m.result then m.result = handles[m.result] end
                -- the handles of the declared exceptions, in order (clients
                -- raise the values of their structs)
                m.exception_structs = {}
                for i, f in ipairs(m.exceptions) do m.exception_structs[i] = handles[f.type.struct] end
            end
        end
    end
    return self
end

local function lookup(self, kind, tbl, name)
    if type(name) ~= "string" then error(kind .. " name must be a string", 3) end
    local v = tbl[name] or tbl[self.program .. "." .. name]
    if v == nil then error("thrift IDL " .. self.path .. " has no " .. kind .. " " .. name, 3) end
    return v
end

--- The codec handle of a struct, union or exception ("Name" in the main
--- program, or "program.Name").
function Schema:struct(name) return lookup(self, "struct", self.structs, name) end
--- A service: { name, extends, methods = { name = { name, oneway, args, result, exceptions, returns } } }.
function Schema:service(name) return lookup(self, "service", self.services, name) end
--- An enum's members, name -> value.
function Schema:enum(name) return lookup(self, "enum", self.enums, name) end
--- A constant's value, in the codec's type mapping.
function Schema:const(name) return lookup(self, "constant", self.consts, name) end

return M
