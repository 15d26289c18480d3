-- baseplate-lint: luacheck's standard checks, plus the check Baseplate.py
-- adds to Pylint (W9000, no-database-query-string-format): SQL built by
-- formatting strings instead of passing parameters. Built on luacheck's own
-- parser (Debian's lua-check), not on a parser of ours. See docs/lint.md.
local M = {}

M.CODE = "W9000"
M.NAME = "no-database-query-string-format"
M.MESSAGE = "String formatting found in database query. Database queries should use native"
    .. " parameter substitution."

local add_lua51_paths = require("baseplate.lua51_paths")

local function need(name)
    add_lua51_paths()
    local ok, mod = pcall(require, name)
    if not ok then
        error("baseplate-lint needs luacheck (Debian's lua-check): cannot load " .. name .. ": "
            .. tostring(mod):match("^[^\n]*"), 0)
    end
    return mod
end

--------------------------------------------------------------------------------
-- W9000 over luacheck's AST

-- The methods of SQL clients whose first argument is SQL.
local SQL_METHODS = { query = true, execute = true, prepare = true }

local function lookup(scope, name)
    while scope do
        local v = scope.vars[name]
        if v ~= nil then return v, scope end
        scope = scope.parent
    end
    return nil
end

-- Whether `node` is made of literals only ("SELECT a" .. " FROM t": SQL
-- split over lines, nothing substituted).
local function literal(node)
    local tag = node.tag
    if tag == "String" or tag == "Number" then return true end
    if tag == "Paren" then return literal(node[1]) end
    return tag == "Op" and node[1] == "concat" and literal(node[2]) and literal(node[3])
end

-- What an expression is to the check: "string" (a string built by `..`,
-- string.format, table.concat or a method `format`, or a variable holding
-- one), "format" (one of those functions itself, e.g. `local f =
-- string.format`), else false.
local function classify(node, scope)
    if type(node) ~= "table" then return false end
    local tag = node.tag
    if tag == "Paren" then return classify(node[1], scope) end
    if tag == "Op" then return node[1] == "concat" and not literal(node) and "string" or false end
    if tag == "Id" then return lookup(scope, node[1]) or false end
    if tag == "Index" then
        local obj, key = node[1], node[2]
        if obj.tag == "Id" and key.tag == "String" and not lookup(scope, obj[1]) then
            if (obj[1] == "string" and key[1] == "format") or (obj[1] == "table" and key[1] == "concat") then
                return "format"
            end
        end
        return false
    end
    if tag == "Call" then
        return classify(node[1], scope) == "format" and "string" or false
    end
    if tag == "Invoke" then -- ("…"):format(…), s:format(…)
        return (node[2].tag == "String" and node[2][1] == "format") and "string" or false
    end
    return false
end

local walk_block, walk_expr

local function report(state, node)
    local offsets = state.line_offsets
    local line = node.line
    local col = offsets and offsets[line] and (node.offset - offsets[line] + 1) or 1
    state.found[#state.found + 1] = { line = line, column = col }
end

-- A call of a SQL client's query/execute/prepare whose SQL is built.
local function check_call(state, node, scope)
    local sql
    if node.tag == "Invoke" then -- db:query(sql, …)
        local method = node[2]
        if method.tag == "String" and SQL_METHODS[method[1]] then sql = node[3] end
    else -- db.query(sql, …) or db.query(db, sql, …)
        local callee = node[1]
        local obj = callee.tag == "Index" and callee[1]
        if obj and obj.tag == "Id" and obj[1] == "os" and not lookup(scope, "os") then
            return -- os.execute runs a shell command, not SQL
        end
        if callee.tag == "Index" and callee[2].tag == "String" and SQL_METHODS[callee[2][1]] then
            sql = node[2]
            if sql and sql.tag == "Id" and obj.tag == "Id" and sql[1] == obj[1] then sql = node[3] end
        end
    end
    if sql and classify(sql, scope) == "string" then report(state, node) end
end

local function walk_function(state, fn, scope)
    local s = { vars = {}, parent = scope }
    for _, p in ipairs(fn[1]) do
        if p.tag == "Id" then s.vars[p[1]] = false end
    end
    walk_block(state, fn[2], s)
end

walk_expr = function(state, node, scope)
    if type(node) ~= "table" then return end
    local tag = node.tag
    if tag == "Function" then return walk_function(state, node, scope) end
    if tag == "Call" or tag == "Invoke" then check_call(state, node, scope) end
    for i = 1, #node do walk_expr(state, node[i], scope) end
end

local function walk_exprs(state, list, scope)
    if type(list) ~= "table" then return end
    for i = 1, #list do walk_expr(state, list[i], scope) end
end

local function walk_stat(state, stat, scope)
    local tag = stat.tag
    if tag == "Local" or tag == "Localrec" then
        local names, values = stat[1], stat[2] or {}
        if tag == "Localrec" then -- (the function sees its own name)
            for _, id in ipairs(names) do scope.vars[id[1]] = false end
        end
        walk_exprs(state, values, scope)
        for i, id in ipairs(names) do
            if id.tag == "Id" then scope.vars[id[1]] = classify(values[i], scope) end
        end
    elseif tag == "Set" then
        local targets, values = stat[1], stat[2] or {}
        walk_exprs(state, values, scope)
        walk_exprs(state, targets, scope)
        for i, target in ipairs(targets) do
            if target.tag == "Id" then
                local kind = classify(values[i], scope)
                local _, owner = lookup(scope, target[1])
                if not owner then -- (a global: known from here on in this file)
                    owner = scope
                    while owner.parent do owner = owner.parent end
                end
                owner.vars[target[1]] = kind
            end
        end
    elseif tag == "Do" then
        walk_block(state, stat, { vars = {}, parent = scope })
    elseif tag == "If" then
        local n = #stat
        for i = 1, n do
            if i % 2 == 1 and i < n then
                walk_expr(state, stat[i], scope)
            else
                walk_block(state, stat[i], { vars = {}, parent = scope })
            end
        end
    elseif tag == "While" then
        walk_expr(state, stat[1], scope)
        walk_block(state, stat[2], { vars = {}, parent = scope })
    elseif tag == "Repeat" then
        local s = { vars = {}, parent = scope }
        walk_block(state, stat[1], s)
        walk_expr(state, stat[2], s)
    elseif tag == "Fornum" then
        for i = 2, #stat - 1 do walk_expr(state, stat[i], scope) end
        local s = { vars = { [stat[1][1]] = false }, parent = scope }
        walk_block(state, stat[#stat], s)
    elseif tag == "Forin" then
        walk_exprs(state, stat[2], scope)
        local s = { vars = {}, parent = scope }
        for _, id in ipairs(stat[1]) do s.vars[id[1]] = false end
        walk_block(state, stat[3], s)
    elseif tag == "Return" then
        walk_exprs(state, stat, scope)
    elseif tag == "Call" or tag == "Invoke" then
        walk_expr(state, stat, scope)
    end
end

walk_block = function(state, block, scope)
    if type(block) ~= "table" then return end
    for i = 1, #block do
        if type(block[i]) == "table" then walk_stat(state, block[i], scope) end
    end
end

--- The W9000 findings in Lua source `src`: a list of {line=, column=}, in
--- source order, or nil and a syntax error "line:col: message".
function M.check_source(src)
    local parser = need("luacheck.parser")
    local decoder = need("luacheck.decoder")
    local ok, ast, _, _, _, _, line_offsets = pcall(parser.parse, decoder.decode(src))
    if not ok then
        local e = ast
        if type(e) == "table" and e.msg then
            local line, col = tonumber(e.line) or 1, 1
            if tonumber(e.offset) then -- (the error has the offset; the column is from the line's start)
                local start, n = 1, 1
                while n < line do
                    local nl = src:find("\n", start, true)
                    if not nl then break end
                    start, n = nl + 1, n + 1
                end
                col = e.offset - start + 1
            end
            return nil, string.format("%d:%d: %s", line, col, e.msg)
        end
        return nil, tostring(e)
    end
    local state = { found = {}, line_offsets = line_offsets }
    walk_block(state, ast, { vars = {}, parent = nil })
    table.sort(state.found, function(a, b)
        if a.line ~= b.line then return a.line < b.line end
        return a.column < b.column
    end)
    return state.found
end

--------------------------------------------------------------------------------
-- The command line

-- Lua files named by `paths` (files as they are, directories searched for
-- *.lua), sorted.
local function lua_files(paths)
    local lfs = need("lfs")
    local files, seen = {}, {}
    local function add(p)
        if not seen[p] then
            seen[p] = true
            files[#files + 1] = p
        end
    end
    local function walk(dir)
        local names = {}
        for name in lfs.dir(dir) do
            if name ~= "." and name ~= ".." then names[#names + 1] = name end
        end
        table.sort(names)
        for _, name in ipairs(names) do
            local p = dir == "." and name or (dir .. "/" .. name)
            local mode = lfs.attributes(p, "mode")
            if mode == "directory" then walk(p)
            elseif mode == "file" and name:match("%.lua$") then add(p) end
        end
    end
    for _, p in ipairs(paths) do
        local mode = lfs.attributes(p, "mode")
        if mode == "directory" then walk((p:gsub("/+$", "")))
        elseif mode then add(p)
        else return nil, p .. ": No such file or directory" end
    end
    return files
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local src = f:read("*a")
    f:close()
    return src
end

-- The fallback .luacheckrc: where this module is, next to it.
local function default_config()
    local here = package.searchpath and package.searchpath("baseplate.lint", package.path)
    return here and (here:gsub("lint%.lua$", "lint_luacheckrc")) or false
end

-- luacheck's report for `files`: its lines ("file:line:col: (Wnnn) …") and
-- its exit status (0, 1 warnings, 2 errors), or nil and an error.
local function run_luacheck(files)
    local runner_mod = need("luacheck.runner")
    local runner, err = runner_mod.new({ default_config = default_config() })
    if not runner then return nil, err end
    local inputs = {}
    for i, f in ipairs(files) do inputs[i] = { filename = f, path = f } end
    local checked, rerr = runner:check(inputs)
    if not checked then return nil, rerr end
    local text = runner:format(checked, { formatter = "plain", codes = true, color = false })
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    local status = (checked.errors or 0) > 0 and 2 or ((checked.warnings or 0) > 0 and 1 or 0)
    if (checked.fatals or 0) > 0 then status = 3 end
    return lines, status
end

local USAGE = "usage: baseplate-lint [-h] [--no-luacheck] [--version] [path ...]"

--- baseplate-lint's main: opts.args are the paths (default "."),
--- opts.no_luacheck skips luacheck's own checks. Prints findings as
--- "file:line:col: …" and returns the exit status: 0 clean, 1 warnings,
--- 2 syntax errors, 3 a file or the configuration could not be read.
local function run(opts)
    local paths = {}
    for i, a in ipairs(opts.args or {}) do paths[i] = a end
    if #paths == 0 then paths[1] = "." end
    local ok, files, ferr = pcall(lua_files, paths)
    if not ok then
        io.stderr:write("baseplate-lint: error: ", tostring(files), "\n")
        return 3
    end
    if not files then
        io.stderr:write(USAGE, "\nbaseplate-lint: error: ", ferr, "\n")
        return 3
    end
    local lines, status = {}, 0
    if not opts.no_luacheck then
        local ok2, lc, lstatus = pcall(run_luacheck, files)
        if not ok2 or not lc then
            io.stderr:write("baseplate-lint: error: ", tostring(ok2 and lstatus or lc), "\n")
            return 3
        end
        for _, l in ipairs(lc) do lines[#lines + 1] = l end
        status = lstatus
    end
    for _, file in ipairs(files) do
        local src, rerr = read_file(file)
        if not src then
            lines[#lines + 1] = file .. ": " .. tostring(rerr)
            status = math.max(status, 3)
        else
            local found, serr = M.check_source(src)
            if not found then
                if opts.no_luacheck then -- (else luacheck reported it)
                    lines[#lines + 1] = file .. ":" .. serr .. " (E011)"
                    status = math.max(status, 2)
                end
            else
                for _, f in ipairs(found) do
                    lines[#lines + 1] = string.format("%s:%d:%d: %s %s: %s", file, f.line, f.column, M.CODE,
                        M.NAME, M.MESSAGE)
                end
                if #found > 0 then status = math.max(status, 1) end
            end
        end
    end
    -- one list, by file, line and column
    local function key(l)
        local f, ln, col = l:match("^(.-):(%d+):(%d+):")
        return f or l, tonumber(ln) or 0, tonumber(col) or 0
    end
    table.sort(lines, function(a, b)
        local fa, la, ca = key(a)
        local fb, lb, cb = key(b)
        if fa ~= fb then return fa < fb end
        if la ~= lb then return la < lb end
        if ca ~= cb then return ca < cb end
        return a < b
    end)
    for _, l in ipairs(lines) do io.stdout:write(l, "\n") end
    io.stdout:flush()
    return status
end

function M.main(opts)
    require("baseplate.runtime") -- (declares bp_loop_stop)
    local status = run(opts)
    io.stderr:flush()
    require("baseplate.core").C.bp_loop_stop()
    return status
end

return M
