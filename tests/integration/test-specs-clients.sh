#!/usr/bin/env bash
# baseplate-test: busted inside the runtime. Specs that wait on the loop,
# the example's spec against the fixture's PostgreSQL and Redis, busted's
# output formats and exit statuses.
. "$(dirname "$0")/lib.sh"
command -v busted >/dev/null || { fail "busted is installed (scripts/install-deps: lua-busted)"; finish; }

out=$(cd "$SOURCE_DIR/examples/helloworld" && "$BIN/baseplate-test" -o TAP 2>&1); rc=$?
check_eq "the example's spec passes against PostgreSQL and Redis (exit 0)" "$rc" 0
check_eq "... its four specs" "$(echo "$out" | grep -c '^ok ')" 4
check_contains "... in TAP" "$out" "ok 2 - helloworld asks PostgreSQL the time"

mkdir -p "$TMP/proj/spec"
cat > "$TMP/proj/spec/loop_spec.lua" <<'LUA'
local baseplate = require("baseplate")
local http = require("baseplate.http")
local testing = require("baseplate.testing")
describe("specs on the loop", function()
    it("may sleep", function()
        local t0 = baseplate.now()
        baseplate.sleep(0.05)
        assert.is_true(baseplate.now() - t0 >= 0.04)
    end)
    it("may call a handler that waits", function()
        local app = http.app({}, {})
        app:get("slow", "/slow", function() baseplate.sleep(0.02) return { ok = true } end)
        local client = testing.client(app)
        assert.are.same({ ok = true }, client:get("/slow"):json())
        client:close()
    end)
    it("reports a failure", function() assert.are.equal(1, 2) end)
    it("reports an error", function() error("oops") end)
    pending("is pending")
end)
LUA
out=$(cd "$TMP/proj" && "$BIN/baseplate-test" -o plainTerminal 2>&1); rc=$?
check_contains "busted's summary" "$out" "2 successes / 1 failure / 1 error / 1 pending"
check_eq "exit status 1, as busted's" "$rc" 1
# (busted's JSON output handler fails on a pending spec, in busted itself too)
(cd "$TMP/proj" && "$BIN/baseplate-test" -o json --filter-out "is pending" > "$TMP/out.json" 2>"$TMP/err.txt")
check_eq "busted's JSON output" "$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["successes"]), len(d["failures"]), len(d["errors"]), len(d["pendings"]))' "$TMP/out.json")" "2 1 1 0"
out=$(cd "$TMP/proj" && "$BIN/baseplate-test" --filter "may sleep" -o TAP 2>&1); rc=$?
check_eq "busted's options (--filter)" "$(echo "$out" | grep -c '^ok ') $rc" "1 0"
out=$(cd "$TMP/proj" && "$BIN/baseplate-test" nowhere 2>&1); rc=$?
check_eq "no specs there: busted's verdict" "$rc" "$(cd "$TMP/proj" && busted nowhere >/dev/null 2>&1; echo $?)"
check_contains "--version" "$("$BIN/baseplate-test" --version)" "baseplate-test "
finish
