-- A very small test library for tests/lua/test-*.lua.
--
--   local t = require("testlib")
--   t.test("parses integers", function() t.eq(parse("3"), 3) end)
--   t.done()   -- prints "N passed, M failed" and raises if any failed
local M = {}

local passed, failed = 0, 0

local function fmt(v)
    if type(v) == "string" then
        return string.format("%q", v)
    elseif type(v) == "table" then
        local parts = {}
        local n = 0
        for k, x in pairs(v) do
            n = n + 1
            if n > 20 then parts[#parts + 1] = "..." break end
            parts[#parts + 1] = tostring(k) .. "=" .. fmt(x)
        end
        table.sort(parts)
        return "{" .. table.concat(parts, ", ") .. "}"
    end
    return tostring(v)
end
M.fmt = fmt

local function deep_eq(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" then return false end
    for k, v in pairs(a) do
        if not deep_eq(v, b[k]) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end
M.deep_eq = deep_eq

function M.eq(got, want, what)
    if not deep_eq(got, want) then
        error(string.format("%sexpected %s, got %s", what and (what .. ": ") or "", fmt(want), fmt(got)), 2)
    end
end

function M.ok(cond, what)
    if not cond then error("assertion failed" .. (what and (": " .. what) or ""), 2) end
end

function M.near(got, want, eps, what)
    eps = eps or 1e-9
    if type(got) ~= "number" or math.abs(got - want) > eps then
        error(string.format("%sexpected %s (+-%g), got %s", what and (what .. ": ") or "", fmt(want), eps, fmt(got)), 2)
    end
end

--- Asserts that fn(...) raises an error whose text contains `pattern` (plain match).
function M.raises(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then
        error("expected an error matching " .. fmt(pattern) .. ", got none", 2)
    end
    local msg = type(err) == "table" and tostring(err.message or err) or tostring(err)
    if pattern and not msg:find(pattern, 1, true) then
        error("expected an error containing " .. fmt(pattern) .. ", got " .. fmt(msg), 2)
    end
    return err
end

--- Waits (letting the loop run) until cond() is true or `seconds` (2 by
--- default) passed; returns whether it became true. For code that runs on
--- the loop: a test, a spawned coroutine.
function M.wait_until(cond, seconds)
    local sleep, now = require("baseplate.runtime").sleep, require("baseplate.runtime").now
    local deadline = now() + (seconds or 2)
    while not cond() do
        if now() >= deadline then return false end
        sleep(0.01)
    end
    return true
end

function M.test(name, fn)
    local ok, err = xpcall(fn, debug.traceback)
    if ok then
        passed = passed + 1
        io.write("ok     ", name, "\n")
    else
        failed = failed + 1
        io.write("FAILED ", name, "\n", tostring(err), "\n")
    end
end

function M.done()
    io.write(string.format("%d passed, %d failed\n", passed, failed))
    io.flush()
    if failed > 0 then
        error(string.format("%d test(s) failed", failed), 0)
    end
end

return M
