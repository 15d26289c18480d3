-- luacheck's (and baseplate-lint's) configuration for this tree:
-- `baseplate-lint lua examples tests/lua tests/integration/apps
-- tests/integration/tools bench` is
-- clean (tests/integration/test-lint.sh checks it).
std = "luajit"
max_line_length = 120
-- handlers, observers and callbacks receive arguments they need not use
unused_args = false
-- `not (x > y)` is how the code refuses NaN along with the small values
ignore = { "581" }
exclude_files = { "build*/**", "**/.luarocks/**" }

-- Tests keep long assertions on one line, assign values only to drop the
-- last reference (collection tests), and set the global `arg` for the code
-- they run.
local tests = {
    max_line_length = 140,
    ignore = { "311", "231", "241" },
    globals = { "arg" },
}
files["tests/lua"] = tests
files["tests/integration/apps"] = tests
files["tests/integration/tools"] = tests
