# The start-up failure modes give one clear line (file, section, key) and
# the documented exit status, never a crash or a Lua traceback.
. "$(dirname "$0")/lib.sh"

serve() { (cd "$TMP" && "$BIN/baseplate-serve" "$@" 2>&1); echo "rc=$?"; }

out=$(serve)
check_contains "no config file: usage" "$out" "usage: baseplate-serve [-h] [--debug] [--reload] [--app-name NAME]"
check_contains "no config file: argparse error" "$out" "baseplate-serve: error: the following arguments are required: config_file"
check_contains "no config file: exit 2" "$out" "rc=2"

out=$(serve --bogus x.ini)
check_contains "unknown flag" "$out" "baseplate-serve: error: unrecognized arguments: --bogus"
check_contains "unknown flag: exit 2" "$out" "rc=2"

out=$(serve -h)
check_contains "--help" "$out" "--app-name NAME"
check_contains "--help exits 0" "$out" "rc=0"

out=$(serve missing.ini)
check_eq "missing file" "$out" "baseplate-serve: error: missing.ini: cannot read config file: No such file or directory
rc=1"

cp "$SOURCE_DIR/examples/helloworld/helloworld.lua" "$TMP/"
ini() { printf "$1" > "$TMP/t.ini"; }
# The keys the example's clients need (nothing connects at start-up).
HELLO='db.url = postgresql://baseplate@127.0.0.1:5432/baseplate\nredis.url = redis://127.0.0.1:6379/0\n'

ini '[app:main]\nfactory = helloworld:nope\n\n[server:main]\nfactory = baseplate.server.http\n'
check_eq "factory that does not exist" "$(serve t.ini)" "baseplate-serve: error: t.ini: [app:main] factory: module 'helloworld' has no callable 'nope'
rc=1"

ini '[app:main]\nfactory = nosuchmodule:make_app\n\n[server:main]\nfactory = baseplate.server.http\n'
check_contains "module that does not exist" "$(serve t.ini)" "t.ini: [app:main] factory: no module named 'nosuchmodule'"

printf 'local M = {}\nfunction M.make_app(cfg\n  return 1\nend\nreturn M\n' > "$TMP/broken.lua"
ini '[app:main]\nfactory = broken:make_app\n\n[server:main]\nfactory = baseplate.server.http\n'
out=$(serve t.ini)
check_contains "module with a syntax error names file and line" "$out" "t.ini: [app:main] factory: cannot load module 'broken': error loading module 'broken' from file './broken.lua': ./broken.lua:3:"
check_eq "syntax error: one line" "$(printf '%s\n' "$out" | wc -l)" 2
check_contains "syntax error: exit 1" "$out" "rc=1"

ini '[app:other]\nfactory = helloworld:make_app\n\n[server:main]\nfactory = baseplate.server.http\n'
check_eq "missing [app:main]" "$(serve t.ini)" "baseplate-serve: error: t.ini: no section [app:main]
rc=1"
check_contains "--app-name picks the section" "$(serve --app-name=nope t.ini)" "t.ini: no section [app:nope]"

ini '[app:main]\nfactory = helloworld:make_app\n'
check_eq "missing [server:main]" "$(serve t.ini)" "baseplate-serve: error: t.ini: no section [server:main]
rc=1"

ini '[app:main]\nsetting = 1\n\n[server:main]\nfactory = baseplate.server.http\n'
check_eq "missing factory" "$(serve t.ini)" "baseplate-serve: error: t.ini: [app:main] factory: no value specified
rc=1"

ini '[app:main]\nfactory = helloworld:make_app\n\n[server:main]\nfactory = baseplate.server.http\n'
check_contains "a client key missing is named" "$(serve t.ini)" "baseplate-serve: error: t.ini: [app:main] db.url: no value specified
rc=1"

ini '[app:main]\nfactory = helloworld:make_app\n'"$HELLO"'\n[server:main]\nfactory = baseplate.server.nope\n'
check_contains "unknown server factory" "$(serve t.ini)" "t.ini: [server:main] factory: no module named 'baseplate.server.nope'"

ini '[app:main]\nfactory = helloworld:make_app\n[server:main]\nfactory = baseplate.server.http\nthis line is wrong\n'
check_eq "INI syntax error names the line" "$(serve t.ini)" "baseplate-serve: error: t.ini:5: syntax error (expected '[section]', 'key = value' or a comment)
rc=1"

ini '[app:main]\nfactory = helloworld:make_app\nfactory = other:make_app\n'
check_eq "duplicate key" "$(serve t.ini)" "baseplate-serve: error: t.ini:3: key 'factory' already set in this section (line 2)
rc=1"

printf 'local M = {}\nfunction M.make_app(cfg)\n  error("cannot start: " .. tostring(cfg.thing))\nend\nreturn M\n' > "$TMP/failing.lua"
ini '[app:main]\nfactory = failing:make_app\nthing = 42\n[server:main]\nfactory = baseplate.server.http\n'
out=$(serve t.ini)
check_contains "error raised by the factory" "$out" "t.ini: [app:main] factory: failing:make_app failed: ./failing.lua:3: cannot start: 42"
if printf '%s' "$out" | grep -q "stack traceback"; then fail "no traceback for start-up errors" "$out"; else pass "no traceback for start-up errors"; fi

printf 'local M = {}\nfunction M.make_app(cfg)\n  return 42\nend\nreturn M\n' > "$TMP/notapp.lua"
ini '[app:main]\nfactory = notapp:make_app\n[server:main]\nfactory = baseplate.server.http\n'
check_contains "factory returning a non-app" "$(serve t.ini)" "t.ini: [app:main] factory: notapp:make_app returned number, expected an application made with baseplate.http.app()"

ini '[app:main]\nfactory = helloworld:make_app\n[server:main]\nfactory = baseplate.server.http\n[logging]\nlevel = LOUD\n'
check_contains "bad log level" "$(serve t.ini)" "t.ini: [logging] level: unknown log level \"LOUD\""

ini '[app:main]\nfactory = helloworld:make_app\n'"$HELLO"'[server:main]\nfactory = baseplate.server.http\n'
out=$(serve --bind 127.0.0.1 t.ini)
check_contains "bind without a port" "$out" 'baseplate-serve: error: 127.0.0.1: no port specified in "127.0.0.1"'
out=$(serve --bind 127.0.0.1:99999 t.ini)
check_contains "bind with a bad port" "$out" '127.0.0.1:99999: invalid port "99999"'
out=$(serve --bind nohost.invalid:80 t.ini)
check_contains "bind to an unknown host" "$out" "nohost.invalid:80: cannot resolve 'nohost.invalid'"

# Numbers are range-checked: what the server's timers and counters cannot
# hold is refused at start-up, naming file, section and key.
srv='[app:main]\nfactory = helloworld:make_app\n'"$HELLO"'[server:main]\nfactory = baseplate.server.http\n'
for kv in "header_timeout = 1e17|expected from 0 to 86400 seconds (a day), got \"1e17\"" \
          "keepalive_timeout = -1|expected from 0 to 86400 seconds (a day), got \"-1\"" \
          "body_timeout = nan|expected a timespan such as" \
          "stop_timeout = 2 days|expected from 0 to 86400 seconds (a day), got \"2 days\"" \
          "max_concurrency = 4294967297|expected a whole number from 0 to 1000000, got \"4294967297\"" \
          "max_body_size = 1e30|expected a whole number from 0 to 4294967296" \
          "max_header_size = 4294967296|expected a whole number from 1024 to 2147483648" \
          "max_header_count = 0|expected a whole number from 1 to 100000" \
          "workers = 100000|expected a whole number from 1 to 1024"; do
  key=${kv%%|*}
  ini "$srv$key\n"
  check_contains "range: $key" "$(serve t.ini)" "t.ini: [server:main] ${key%% =*}: ${kv#*|}"
done
# Control bytes in a value are escaped when an error shows it (no terminal
# escape sequences, no bell).
ini "$srv"'header_timeout = "ab\033[31mred\007"\n'
out=$(serve t.ini)
check_contains "control bytes escaped in errors" "$out" 'header_timeout: expected a timespan such as "30 seconds" or a number of seconds, got "\"ab\x1b[31mred\x07\""'
if printf '%s' "$out" | grep -q "$(printf '\033')"; then fail "no raw escape byte in the error"; else pass "no raw escape byte in the error"; fi
# A UTF-8 byte order mark at the start of the file is not content.
ini '\357\273\277'"$srv"
start_server "$TMP/t.ini" && pass "a config file starting with a UTF-8 BOM starts" || fail "a config file starting with a UTF-8 BOM starts"
stop_server

# A port another server already serves is refused (no silent sharing through
# SO_REUSEPORT), with or without workers on either side; sharing is asked for
# with reuse_port = true on both.
start_server "$TMP/t.ini" || fail "first server starts"
for args in "" "--workers 2"; do
  # shellcheck disable=SC2086
  out=$(cd "$TMP" && timeout 10 "$BIN/baseplate-serve" $args --bind "127.0.0.1:$PORT" t.ini 2>&1; echo "rc=$?")
  check_contains "a served port is refused (${args:-single})" "$out" "127.0.0.1:$PORT: cannot listen: Address already in use"
  check_contains "and start-up fails (${args:-single})" "$out" "rc=1"
done
stop_server
start_server "$TMP/t.ini" --workers 2 || fail "server with workers starts"
out=$(cd "$TMP" && timeout 10 "$BIN/baseplate-serve" --bind "127.0.0.1:$PORT" t.ini 2>&1; echo "rc=$?")
check_contains "a port served by workers is refused" "$out" "Address already in use"
stop_server
ini '[app:main]\nfactory = helloworld:make_app\n'"$HELLO"'[server:main]\nfactory = baseplate.server.http\nreuse_port = true\n'
start_server "$TMP/t.ini" || fail "sharing server starts"
(cd "$TMP" && exec "$BIN/baseplate-serve" --bind "127.0.0.1:$PORT" t.ini) > "$TMP/second.log" 2>&1 &
second=$!
for _ in $(seq 1 100); do grep -q "Listening on" "$TMP/second.log" && break; sleep 0.05; done
check_contains "reuse_port = true on both: the second one shares" "$(cat "$TMP/second.log")" "Listening on ('127.0.0.1', $PORT)"
kill "$second"; wait "$second" 2>/dev/null
stop_server
ini '[app:main]\nfactory = helloworld:make_app\n'"$HELLO"'[server:main]\nfactory = baseplate.server.http\nreuse_port = perhaps\n'
check_contains "reuse_port takes a boolean" "$(serve t.ini)" "t.ini: [server:main] reuse_port:"

finish
