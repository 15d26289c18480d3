-- baseplate.ini: INI files as Lua tables.
local t = require("testlib")
local ini = require("baseplate.ini")

t.test("sections as tables, DEFAULT merged", function()
    local f = ini.parse("[DEFAULT]\na = 1\n[app:main]\nfactory = m:f\nA = 2\n[server:main]\n", "x.ini")
    t.eq(f.path, "x.ini")
    t.eq(f:section("app:main"), { factory = "m:f", a = "2" })
    t.eq(f:section("server:main"), { a = "1" })
    t.eq(f:section("server:main", true), {})
    t.eq(f:section("nope"), nil)
    t.eq(f:section_names(), { "app:main", "server:main" })
    t.eq(f:line_of("app:main", "factory"), 4)
end)

t.test("errors name file and line", function()
    t.raises("x.ini:2: syntax error", ini.parse, "[a]\nnonsense\n", "x.ini")
    t.raises("missing.ini: cannot read config file: No such file or directory", ini.load, "missing.ini")
end)

t.done()
