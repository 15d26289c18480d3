-- baseplate-shell: an interactive Lua shell with the application loaded,
-- after Baseplate.py's baseplate-shell. The environment holds `app` (from the
-- [app:NAME] factory), `context` (a context object with a server span named
-- "shell"), and what a `setup = module:function` in [shell] (or [tshell])
-- adds with setup(env, env_banner).
--
-- Lines come from the console in src/cli/shell.c (libedit on a terminal, a
-- libuv stream on a pipe) without blocking the loop. Each complete input runs
-- in its own scheduler coroutine, inside the shell's span, so clients that
-- wait work at the prompt; Ctrl-C abandons the input (its wait ends with
-- "interrupted") or what is being typed, Ctrl-D ends the shell.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local server = require("baseplate.server")
local script = require("baseplate.script")

ffi.cdef([[
int bp_shell_console_open(const char *history_file);
int bp_shell_read_line(const char *prompt, int waiter);
const char *bp_shell_line(size_t *len);
void bp_shell_cancel_read(void);
void bp_shell_add_history(const char *line);
void bp_shell_console_close(void);
]])

local C = core.C

local M = {}

M.PROMPT = ">>> "
M.CONTINUATION = "... "

--------------------------------------------------------------------------------
-- Printing values readably

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function if in local nil not
    or repeat return then true until while goto]]):gmatch("%a+") do KEYWORDS[w] = true end

local ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function quote(s)
    return '"' .. s:gsub('[%c\\"]', function(c)
        return ESCAPES[c] or string.format("\\%03d", c:byte())
    end) .. '"'
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return (TYPE_ORDER[ta] or 9) < (TYPE_ORDER[tb] or 9) end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
end

local repr

local function key_repr(k, seen, depth)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
    return "[" .. repr(k, seen, depth, "") .. "]"
end

-- `indent`: the indentation of the line the value starts on.
function repr(v, seen, depth, indent)
    local t = type(v)
    if t == "string" then return quote(v) end
    if t == "number" then
        if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
        return tostring(v)
    end
    if t ~= "table" then return tostring(v) end
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__tostring") then return tostring(v) end
    if seen[v] then return "<cycle: " .. tostring(v) .. ">" end
    if depth > 5 then return "{...}" end
    seen[v] = true
    local n = #v
    local keys = {}
    for k in pairs(v) do
        if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
            keys[#keys + 1] = k
        end
    end
    table.sort(keys, key_less)
    local inner = indent .. "  "
    local items = {}
    for i = 1, n do items[#items + 1] = repr(v[i], seen, depth + 1, inner) end
    for _, k in ipairs(keys) do
        items[#items + 1] = key_repr(k, seen, depth + 1) .. " = " .. repr(v[k], seen, depth + 1, inner)
    end
    seen[v] = nil
    if #items == 0 then return "{}" end
    local one_line = "{ " .. table.concat(items, ", ") .. " }"
    if #one_line + #indent <= 78 and not one_line:find("\n", 1, true) then return one_line end
    return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

--- A readable, Lua-like rendering of `v` (tables sorted and indented).
function M.repr(v)
    return repr(v, {}, 0, "")
end

--------------------------------------------------------------------------------
-- Compiling input

--- Compile one input: an expression (its values are printed) or a
--- statement. Returns f; or nil, "incomplete" when more lines are needed;
--- or nil, message for a syntax error.
function M.compile(chunk, env)
    local src = chunk:gsub("^%s*=", "", 1) -- Lua's "=expr"
    -- Not "return expr": a tail call would lose the line of an error.
    local f = loadstring("return select(1, " .. src .. "\n)", "=stdin")
    local err
    if not f then
        f, err = loadstring(src, "=stdin")
    end
    if not f then
        if err:sub(-7) == "'<eof>'" then return nil, "incomplete" end
        return nil, err
    end
    setfenv(f, env)
    return f
end

--------------------------------------------------------------------------------
-- Completing names (Tab), as Python's rlcompleter does: a word without a
-- dot completes the environment's names (and Lua's keywords); "a.b.c" or
-- "a.b:c" evaluates the chain of names before the last separator (indexing
-- as Lua does, so a context builds the attribute it is asked for) and
-- completes the fields of what it finds: the table's own keys, what its
-- metatable's __dir function lists (baseplate's context objects), and the
-- keys of __index tables (methods), up the chain. After ':' only functions
-- are offered; a function is completed with "(". Names starting with "_"
-- are offered only when the word after the separator starts with one.

local MAX_COMPLETIONS = 500
local IDENT = "^[%a_][%w_]*$"

local shell_env -- the environment of the running shell

local function add_names(names, t)
    for k in pairs(t) do
        if type(k) == "string" and k:match(IDENT) and not KEYWORDS[k] then names[k] = true end
    end
end

-- The names that `value.` or `value:` may be followed by.
local function field_names(value)
    local names, seen = {}, {}
    local depth = 0
    while value ~= nil and depth < 10 and not seen[value] do
        seen[value] = true
        depth = depth + 1
        if type(value) == "table" then add_names(names, value) end
        local mt = getmetatable(value)
        if type(mt) ~= "table" then break end
        local dir = rawget(mt, "__dir")
        if type(dir) == "function" then
            local ok, list = pcall(dir, value)
            if ok and type(list) == "table" then
                for _, k in ipairs(list) do
                    if type(k) == "string" and k:match(IDENT) then names[k] = true end
                end
            end
        end
        value = rawget(mt, "__index")
        if type(value) ~= "table" then break end
    end
    return names
end

local function index(t, k)
    local ok, v = pcall(function() return t[k] end)
    if ok then return v end
    return nil
end

--- The completions of `text` in the shell's environment, one a line.
function M.complete(text, env)
    env = env or shell_env or _G
    local prefix, sep, partial = text:match("^(.*)([.:])([%w_]*)$")
    local candidates = {}
    if prefix then
        if not (prefix .. "."):match("^[%a_][%w_]*%.") then return "" end
        local value = env
        for name in (prefix .. "."):gmatch("([^.]*)%.") do
            local t = type(value)
            if not name:match(IDENT) or (t ~= "table" and t ~= "userdata" and t ~= "string") then
                return ""
            end
            value = index(value, name)
            if value == nil then return "" end
        end
        for k in pairs(field_names(value)) do
            if k:sub(1, #partial) == partial and (partial:sub(1, 1) == "_" or k:sub(1, 1) ~= "_") then
                local v = index(value, k)
                if sep == "." or type(v) == "function" then
                    candidates[#candidates + 1] = prefix .. sep .. k .. (type(v) == "function" and "(" or "")
                end
            end
        end
    else
        if not text:match("^[%w_]*$") then return "" end
        local names = field_names(env)
        for k in pairs(KEYWORDS) do names[k] = true end
        for k in pairs(names) do
            if k:sub(1, #text) == text and (text:sub(1, 1) == "_" or k:sub(1, 1) ~= "_") then
                candidates[#candidates + 1] = k .. (type(index(env, k)) == "function" and "(" or "")
            end
        end
    end
    table.sort(candidates)
    for i = MAX_COMPLETIONS + 1, #candidates do candidates[i] = nil end
    return table.concat(candidates, "\n")
end

--------------------------------------------------------------------------------
-- The REPL

local out, errout = io.stdout, io.stderr

local function show_results(res)
    local n = res.n
    if n < 2 then return end
    local parts = {}
    for i = 2, n do parts[#parts + 1] = M.repr(res[i]) end
    out:write(table.concat(parts, "\t"), "\n")
end

-- Run compiled input `f` in the running (scheduler) coroutine, in the
-- shell's span; report to whoever waits for it.
local function run_input(f, state)
    state.co = coroutine.running()
    local prev = C.bp_span_current()
    runtime.set_span(state.span_c)
    local res = { n = 0 }
    local function collect(ok, ...)
        res.n = select("#", ...) + 1
        res[1] = ok
        for i = 1, res.n - 1 do res[i + 1] = select(i, ...) end
    end
    collect(xpcall(f, function(err)
        local tb = script.traceback(runtime.message_of(err), 2) -- (not a tail call)
        return tb
    end))
    runtime.set_span(prev)
    state.res = res
    state.done = true
    if state.waiter then runtime.wake(state.waiter, core.OK) end
end

local function load_setup(file, env, banner)
    local section_name = file:section("shell", true) and "shell"
        or (file:section("tshell", true) and "tshell") or nil
    if not section_name then return end
    local spec = (file:section(section_name, true) or {}).setup
    if not spec or spec == "" then return end
    local ok, fn = pcall(server.load_factory, spec, nil)
    if not ok then server.config_error(file.path, section_name, "setup", runtime.message_of(fn)) end
    if fn.kind ~= "lua" then
        server.config_error(file.path, section_name, "setup", spec .. " is a C module; expected a Lua function")
    end
    local tb
    local ok2, err = xpcall(fn.fn, function(e)
        tb = debug.traceback(runtime.message_of(e), 2)
        return e
    end, env, banner)
    if not ok2 then
        require("baseplate.log").get_logger("baseplate.shell"):debug("%s", tb or "")
        server.config_error(file.path, section_name, "setup", spec .. " failed: " .. runtime.message_of(err))
    end
end

--- The banner, as Baseplate.py prints it: the objects and what they are.
function M.banner(env_banner)
    local names = {}
    for k in pairs(env_banner) do names[#names + 1] = k end
    table.sort(names)
    local lines = {
        "Baseplate Interactive Shell",
        string.format("%s (baseplate %s)", jit and jit.version or _VERSION, core.version),
        "",
        "Available Objects:",
        "",
    }
    for _, k in ipairs(names) do
        lines[#lines + 1] = string.format("  %-12s %s", k, tostring(env_banner[k]))
    end
    return table.concat(lines, "\n")
end

local function history_file()
    local f = os.getenv("BASEPLATE_SHELL_HISTORY")
    if f then return f end
    local home = os.getenv("HOME")
    if home and home ~= "" then return home .. "/.baseplate_shell_history" end
    return nil
end

local SIGNAL_STATUS = { SIGTERM = 128 + 15, SIGUSR2 = 128 + 12 }

--- baseplate-shell's main (run by the core in a coroutine).
--- opts: config_file, app_name, debug
function M.main(opts)
    local file = script.read_config(opts.config_file)
    local section = "app:" .. (opts.app_name or "main")
    script.app_config(file, opts.app_name, opts.debug)
    local app = server.make_app(file, section)
    server.state.app = app

    local bp = app.baseplate or require("baseplate.baseplate").new(app.config or {})
    local context = bp:make_context_object()
    local span = bp:make_server_span(context, "shell")
    span:start()

    local env = setmetatable({ app = app, context = context, baseplate = require("baseplate") },
        { __index = _G })
    local env_banner = {
        app = "This project's app instance",
        context = "The context for this shell instance's span",
        baseplate = "The baseplate module",
    }
    load_setup(file, env, env_banner)

    shell_env = env
    local tty = C.bp_shell_console_open(history_file()) == 1

    local reading   -- the waiter of the line being read
    local current   -- the input running
    local exit_code = 0

    runtime.set_interactive(true)
    runtime.add_signal_handler(function(name)
        if name == "SIGINT" or SIGNAL_STATUS[name] then
            if SIGNAL_STATUS[name] then exit_code = SIGNAL_STATUS[name] end
            if current then
                -- Abandon the input: end its wait (it may go on, disowned).
                local st = current
                current = nil
                st.abandoned = true
                if st.co then runtime.interrupt(st.co, core.ECANCELED) end
                if st.waiter then runtime.wake(st.waiter, core.ECANCELED) end
            elseif reading then
                local w = reading
                reading = nil
                C.bp_shell_cancel_read()
                runtime.wake(w, core.ECANCELED)
            end
        end
    end)

    out:write(M.banner(env_banner), "\n")
    out:flush()

    local line_len = ffi.new("size_t[1]")
    local function start_read(waiter, prompt)
        local rc = C.bp_shell_read_line(tty and prompt or "", waiter)
        if rc == core.AGAIN then reading = waiter end
        return rc
    end

    local buffer
    while exit_code == 0 do
        out:flush()
        local rc = runtime.await(start_read, buffer and M.CONTINUATION or M.PROMPT)
        reading = nil
        if rc == core.ECANCELED then
            buffer = nil -- Ctrl-C: drop what was typed
        elseif rc ~= core.OK then
            break -- the end of the input (Ctrl-D), or stdin failed
        else
            local line = ffi.string(C.bp_shell_line(line_len), line_len[0])
            if tty then C.bp_shell_add_history(line) end
            local chunk = buffer and (buffer .. "\n" .. line) or line
            buffer = nil
            if chunk:find("%S") then
                local f, err = M.compile(chunk, env)
                if err == "incomplete" then
                    buffer = chunk
                elseif not f then
                    errout:write(err, "\n")
                else
                    local state = { span_c = span.c }
                    local wrc = runtime.await(function(waiter)
                        runtime.spawn(run_input, f, state)
                        if state.done then return core.OK end
                        state.waiter = waiter
                        current = state
                        return core.AGAIN
                    end)
                    current = nil
                    if state.abandoned or wrc == core.ECANCELED then
                        -- (on a terminal, after the "^C" it echoed)
                        errout:write(tty and "\ninterrupted\n" or "interrupted\n")
                    elseif state.res[1] then
                        show_results(state.res)
                    else
                        errout:write(tostring(state.res[2]), "\n")
                    end
                end
            end
        end
    end
    out:flush()
    C.bp_shell_console_close()
    span:finish()
    -- The shell is over: stop whatever its inputs left scheduled.
    C.bp_loop_stop()
    return exit_code
end

return M
