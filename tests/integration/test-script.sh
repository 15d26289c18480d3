# baseplate-script: the reference's printer example, [DEFAULT] and
# --app-name, arguments, exit statuses, errors (one line at start-up, the
# message and traceback for the function's own), waiting on the loop inside a
# server span.
. "$(dirname "$0")/lib.sh"

script() { (cd "$TMP" && "$BIN/baseplate-script" "$@" 2>&1); echo "rc=$?"; }
cp "$SOURCE_DIR/examples/printer/printer.lua" "$SOURCE_DIR/examples/printer/printer.ini" \
  "$APPS/scriptapp.lua" "$TMP/"

# --- the reference's example -------------------------------------------------------
check_eq "printer example" "$(script printer.ini printer:run Goodbye.)" "Hello! Goodbye.
rc=0"
check_eq "printer example, --app-name=bizarro" \
  "$(script printer.ini --app-name=bizarro printer:run Goodbye.)" "!olleH Goodbye.
rc=0"
check_eq "--app-name before the config file" \
  "$(script --app-name bizarro printer.ini printer:run Goodbye.)" "!olleH Goodbye.
rc=0"
check_eq "the function's own exit status" "$(script printer.ini printer:run)" \
  "usage: baseplate-script printer.ini printer:run NAME
rc=2"

# --- configuration and arguments ---------------------------------------------------
printf '[DEFAULT]\nshared = from-default\nover = from-default\n[app:main]\nover = from-app\nhome = ${BP_SCRIPT_HOME}\n[app:other]\nx = 1\n' > "$TMP/t.ini"
out=$(cd "$TMP" && BP_SCRIPT_HOME=/home/x "$BIN/baseplate-script" t.ini scriptapp:show a --flag -- "b c" 2>&1; echo "rc=$?")
check_eq "app_config with [DEFAULT], args after the function" "$out" "home=/home/x
over=from-app
shared=from-default
args=a|--flag|--|b c n=4
rc=0"
check_eq "no arguments: an empty table" "$(script t.ini scriptapp:show | tail -2)" "args= n=0
rc=0"
check_eq "exit status returned by the function" "$(script t.ini scriptapp:status 7)" "rc=7"
check_eq "nil result: exit status 0" "$(script t.ini scriptapp:status)" "rc=0"

# --- errors --------------------------------------------------------------------------
out=$(script t.ini scriptapp:fail disk)
check_contains "error: message" "$out" "baseplate-script: error: ./scriptapp.lua:16: boom: disk"
check_contains "error: traceback" "$out" "stack traceback:"
check_contains "error: traceback names the caller" "$out" "./scriptapp.lua:20: in function <./scriptapp.lua:19>"
check_contains "error: exit 1" "$out" "rc=1"
case "$out" in *script.lua*) fail "traceback stops at the script's function" "$out" ;; *) pass "traceback stops at the script's function" ;; esac
out=$(script t.ini scriptapp:fail_table)
check_contains "error object with a message" "$out" "baseplate-script: error: a table error"
check_contains "error object: exit 1" "$out" "rc=1"

out=$(script)
check_contains "no arguments: usage" "$out" "usage: baseplate-script [-h] [--debug] [--app-name NAME]"
check_contains "no arguments: argparse error" "$out" "baseplate-script: error: the following arguments are required: config_file, entrypoint"
check_contains "no arguments: exit 2" "$out" "rc=2"
out=$(script t.ini)
check_contains "no entrypoint" "$out" "baseplate-script: error: the following arguments are required: entrypoint"
check_contains "unknown flag" "$(script --bogus t.ini x:y)" "baseplate-script: error: unrecognized arguments: --bogus"
out=$(script -h)
check_contains "--help lists --app-name" "$out" "--app-name NAME"
check_contains "--help exits 0" "$out" "rc=0"
check_eq "missing config file" "$(script missing.ini scriptapp:show)" \
  "baseplate-script: error: missing.ini: cannot read config file: No such file or directory
rc=1"
check_eq "missing section" "$(script t.ini --app-name=nope scriptapp:show)" \
  "baseplate-script: error: t.ini: no section [app:nope]
rc=1"
check_eq "entrypoint without a function" "$(script t.ini scriptapp)" \
  "baseplate-script: error: entrypoint: expected 'module:function', got \"scriptapp\"
rc=2"
check_eq "function that does not exist" "$(script t.ini scriptapp:nope)" \
  "baseplate-script: error: entrypoint: module 'scriptapp' has no callable 'nope'
rc=1"
check_contains "module that does not exist" "$(script t.ini nosuchmodule:run)" \
  "baseplate-script: error: entrypoint: no module named 'nosuchmodule'"
printf 'local M = {}\nfunction M.run(\nreturn M\n' > "$TMP/broken.lua"
out=$(script t.ini broken:run)
check_contains "module with a syntax error" "$out" "baseplate-script: error: entrypoint: cannot load module 'broken'"
check_eq "syntax error: one line" "$(printf '%s\n' "$out" | wc -l)" 2

# --- on the loop, in a server span ----------------------------------------------------
printf '[app:main]\n[logging]\nformat = json\n' > "$TMP/j.ini"
out=$(script j.ini scriptapp:traced)
check_contains "coroutines wait and run" "$out" "spawned finished: 3"
check_contains "exit 0" "$out" "rc=0"
trace=$(printf '%s\n' "$out" | grep '"in span nightly"' | sed -E 's/.*"traceID": "([0-9]+)".*/\1/')
if [ -n "$trace" ] && printf '%s\n' "$out" | grep '"after waiting: 3"' | grep -q "\"traceID\": \"$trace\""; then
  pass "log lines in server_context carry its trace ID, also after waiting"
else
  fail "log lines in server_context carry its trace ID, also after waiting" "$out"
fi
check_contains "--debug" "$(script --debug j.ini scriptapp:debug)" '"message": "a debug line", "level": "DEBUG"'
check_eq "INFO without --debug" "$(script j.ini scriptapp:debug)" "rc=0"
start=$(date +%s)
check_eq "ends when the function returns, timers or not" "$(script t.ini scriptapp:leave_timer)" "returning
rc=0"
[ $(( $(date +%s) - start )) -lt 5 ] && pass "did not wait for the timer" || fail "did not wait for the timer"
finish
