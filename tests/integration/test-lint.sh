#!/usr/bin/env bash
# baseplate-lint: W9000 (SQL built by formatting strings) on luacheck's
# parser, luacheck's own checks, .luacheckrc, exit statuses.
. "$(dirname "$0")/lib.sh"
command -v luacheck >/dev/null || { fail "luacheck is installed (scripts/install-deps: lua-check)"; finish; }
cd "$TMP"
cat > svc.lua <<'LUA'
local M = {}
local fmt = string.format

function M.handler(request)
    local db = request.db
    local id = request.query.id
    db:query("SELECT * FROM users WHERE id = $1", id)
    db:query("SELECT * FROM users WHERE id = " .. id)
    local q = string.format("DELETE FROM t WHERE id = %s", id)
    db:execute(q)
    q = "SELECT 1"
    db:execute(q)
    db.prepare(db, fmt("SELECT %s", id))
    db:query(table.concat({ "SELECT", id }, " "))
    db:query(("SELECT %d"):format(id))
    local parts = "SELECT " .. id
    if id then
        local parts2 = parts
        db:query(parts2)
    end
    request.log:info("SELECT " .. id) -- (not a SQL client's call)
    db:query("SELECT a, b"
        .. " FROM t WHERE id = $1", id) -- (literals only: nothing substituted)
    os.execute("rm -f " .. id) -- (a shell command)
    local unused = 1
end

return M
LUA
MSG="W9000 no-database-query-string-format: String formatting found in database query. Database queries should use native parameter substitution."
out=$("$BIN/baseplate-lint" svc.lua); rc=$?
check_eq "W9000 where SQL is built (.., string.format, an alias of it, table.concat, :format, a variable holding one), not for parameters, constants, literals joined by .. or os.execute; luacheck's own warning among them" \
  "$out" "svc.lua:8:5: $MSG
svc.lua:10:5: $MSG
svc.lua:13:5: $MSG
svc.lua:14:5: $MSG
svc.lua:15:5: $MSG
svc.lua:19:9: $MSG
svc.lua:25:11: (W211) unused variable 'unused'"
check_eq "exit status 1 on findings" "$rc" 1
out=$("$BIN/baseplate-lint" --no-luacheck .); rc=$?
check_eq "--no-luacheck: only W9000, a directory searched" "$(echo "$out" | grep -c W9000) $(echo "$out" | grep -c W211) $rc" "6 0 1"
printf 'ignore = { "211" }\n' > .luacheckrc
check_eq ".luacheckrc is luacheck's configuration" "$("$BIN/baseplate-lint" svc.lua | grep -c W211)" 0
rm .luacheckrc
printf 'local M = {}\nfunction M.f(db, id)\n    return db:query("SELECT $1", id)\nend\nreturn M\n' > clean.lua
out=$("$BIN/baseplate-lint" clean.lua); rc=$?
check_eq "a clean file: no output, exit 0" "$out $rc" " 0"
printf 'local x = = 1\n' > broken.lua
out=$("$BIN/baseplate-lint" broken.lua); rc=$?
check_contains "a syntax error: luacheck's error" "$out" "broken.lua:1:11: (E011) expected expression near '='"
check_eq "exit status 2" "$rc" 2
out=$("$BIN/baseplate-lint" --no-luacheck broken.lua); rc=$?
check_eq "--no-luacheck: the syntax error too, exit 2" "$out $rc" "broken.lua:1:11: expected expression near '=' (E011) 2"
out=$("$BIN/baseplate-lint" missing.lua 2>&1); rc=$?
check_contains "a missing file" "$out" "baseplate-lint: error: missing.lua: No such file or directory"
check_eq "exit status 3" "$rc" 3
check_contains "--help" "$("$BIN/baseplate-lint" --help)" "usage: baseplate-lint [-h] [--no-luacheck] [--version] [path ...]"
# The project's own Lua passes its own linter (the tree's .luacheckrc).
out=$(cd "$SOURCE_DIR" && "$BIN/baseplate-lint" lua examples tests/lua tests/integration/apps tests/integration/tools bench 2>&1); rc=$?
check_eq "baseplate's own Lua is clean under baseplate-lint" "$out $rc" " 0"
finish
