-- baseplate.shell's pure parts: printing values and compiling input.
local t = require("testlib")
local shell = require("baseplate.shell")
local runtime = require("baseplate.runtime")
local core = require("baseplate.core")

local repr = shell.repr

t.test("scalars", function()
    t.eq(repr(nil), "nil")
    t.eq(repr(true), "true")
    t.eq(repr(42), "42")
    t.eq(repr(-3), "-3")
    t.eq(repr(1.5), "1.5")
    t.eq(repr(2 ^ 40), "1099511627776")
    t.eq(repr(1 / 0), "inf")
    t.eq(repr("a\"b\\c\n\t\1"), '"a\\"b\\\\c\\n\\t\\001"')
end)

t.test("tables: array part, sorted keys, nesting", function()
    t.eq(repr({}), "{}")
    t.eq(repr({ 1, 2, 3 }), "{ 1, 2, 3 }")
    t.eq(repr({ b = 1, a = { x = true }, [1] = "one", [5] = 5, ["with space"] = 0, ["end"] = 1 }),
        '{ "one", [5] = 5, a = { x = true }, b = 1, ["end"] = 1, ["with space"] = 0 }')
    local long = {}
    for i = 1, 30 do long[i] = i * 1000 end
    local r = repr({ list = long })
    t.ok(r:find("^{\n  list = {\n    1000,\n    2000,"), r)
    t.ok(r:find("\n  }\n}$"), r)
end)

t.test("cycles, depth, __tostring", function()
    local a = {}
    a.self = a
    t.ok(repr(a):find("^{ self = <cycle: table: "), repr(a))
    local deep = { { { { { { { 1 } } } } } } }
    t.ok(repr(deep):find("{...}", 1, true), repr(deep))
    local obj = setmetatable({}, { __tostring = function() return "Thing(1)" end })
    t.eq(repr({ obj }), "{ Thing(1) }")
    local shared = { 1 }
    t.eq(repr({ shared, shared }), "{ { 1 }, { 1 } }") -- shared, not a cycle
end)

t.test("compile: expressions, statements, incomplete input, errors", function()
    local env = setmetatable({}, { __index = _G })
    local f = shell.compile("1 + 1", env)
    t.eq({ f() }, { 2 })
    f = shell.compile("=1, 2", env)
    t.eq({ f() }, { 1, 2 })
    f = shell.compile("x = 5", env)
    f()
    t.eq(env.x, 5)
    t.eq(rawget(_G, "x"), nil)
    t.eq(select(2, shell.compile("for i = 1, 2 do", env)), "incomplete")
    t.eq(select(2, shell.compile("f(", env)), "incomplete")
    t.eq(select(2, shell.compile("s = [[long", env)), "incomplete")
    local _, err = shell.compile("this is not lua", env)
    t.eq(err, "stdin:1: '=' expected near 'is'")
    f = shell.compile("1 -- a comment", env)
    t.eq({ f() }, { 1 })
    -- errors keep their line (no tail call)
    f = shell.compile("error('x')", env)
    t.eq(select(2, pcall(f)), "stdin:1: x")
end)

t.test("banner", function()
    local b = shell.banner({ app = "The app", context = "The context", z = "Last" })
    t.ok(b:find("^Baseplate Interactive Shell\n"), b)
    t.ok(b:find("\n\nAvailable Objects:\n\n  app          The app\n  context      The context\n  z            Last$"), b)
end)

t.test("runtime.interrupt ends a wait with a status", function()
    local got, co
    runtime.spawn(function()
        co = coroutine.running()
        got = runtime.await(function() return core.AGAIN end)
    end)
    t.eq(got, nil)
    t.eq(runtime.interrupt(co, core.ECANCELED), true)
    t.eq(got, core.ECANCELED)
    t.eq(runtime.interrupt(co, core.ECANCELED), false) -- not waiting any more
    t.eq(core.strerror(core.ECANCELED), "interrupted")
end)

t.done()
