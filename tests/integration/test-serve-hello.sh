# The tutorial's hello-world service, served as `make serve` serves it.
. "$(dirname "$0")/lib.sh"

start_server "$SOURCE_DIR/examples/helloworld/helloworld.ini" --debug || { fail "server starts"; finish; }
pass "server starts"
check_contains "logs Listening on" "$(cat "$LOG")" "Listening on ('127.0.0.1', $PORT), PID:$SERVER_PID"

body=$(curl -s "$(url /)")
check_eq "GET / answers the tutorial's JSON" "$body" '{"Hello":"World"}'

headers=$(curl -s -D - -o /dev/null "$(url /)" | tr -d '\r')
check_contains "content type is JSON" "$headers" "Content-Type: application/json"
check_contains "content length" "$headers" "Content-Length: 17"

sleep 0.2
line=$(grep -F 'GET / HTTP/1.1\" 200 17 ' "$LOG" | head -n 1)
check_contains "request logged as a JSON line" "$line" '{"message": "127.0.0.1 - - ['
check_contains "access log names the logger" "$line" '"level": "DEBUG", "name": "baseplate.server.http"'
check_contains "log line has the process id" "$line" "\"process\": $SERVER_PID"
if printf '%s' "$line" | grep -Eq '\\" 200 17 [0-9]+\.[0-9]{6}"'; then pass "access log has the duration"; else fail "access log has the duration" "$line"; fi

code=$(curl -s -o /dev/null -w '%{http_code}' "$(url /nope)")
check_eq "unknown path is 404" "$code" 404
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$(url /)")
check_eq "wrong method is 405" "$code" 405
allow=$(curl -s -D - -o /dev/null -X POST "$(url /)" | tr -d '\r' | grep -i '^allow:')
check_eq "405 lists the allowed methods" "$allow" "Allow: GET, HEAD"

stop_server INT
check_eq "Ctrl-C (SIGINT) stops the server cleanly" "$SERVER_RC" 0

start_server "$SOURCE_DIR/examples/helloworld/helloworld.ini" || { fail "server restarts"; finish; }
check_eq "served again" "$(curl -s "$(url /)")" '{"Hello":"World"}'
if grep -qF 'GET / HTTP/1.1' "$LOG"; then fail "no access log without --debug"; else pass "no access log without --debug"; fi
stop_server TERM
check_eq "SIGTERM stops the server cleanly" "$SERVER_RC" 0

# Other endpoint forms: a UNIX socket and IPv6 loopback.
sock=$TMP/hello.sock
(cd "$SOURCE_DIR/examples/helloworld" && exec "$BIN/baseplate-serve" --bind "$sock" helloworld.ini) >"$TMP/unix.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && grep -q "Listening on $sock" "$TMP/unix.log" && break; sleep 0.05; done
check_eq "serves on a UNIX socket" "$(curl -s --unix-socket "$sock" http://localhost/)" '{"Hello":"World"}'
stop_server INT
check_eq "UNIX socket server exits cleanly" "$SERVER_RC" 0
# The socket file is left behind; a restart on the same path still works.
(cd "$SOURCE_DIR/examples/helloworld" && exec "$BIN/baseplate-serve" --bind "$sock" helloworld.ini) >"$TMP/unix2.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "Listening on $sock" "$TMP/unix2.log" && break; sleep 0.05; done
check_eq "restarts on a stale UNIX socket file" "$(curl -s --unix-socket "$sock" http://localhost/)" '{"Hello":"World"}'
out=$(cd "$SOURCE_DIR/examples/helloworld" && "$BIN/baseplate-serve" --bind "$sock" helloworld.ini 2>&1)
check_contains "but never takes over a live one" "$out" "cannot listen: Address already in use"
stop_server INT

v6port=$((20000 + (RANDOM % 20000)))
(cd "$SOURCE_DIR/examples/helloworld" && exec "$BIN/baseplate-serve" --bind "[::1]:$v6port" helloworld.ini) >"$TMP/v6.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "Listening on" "$TMP/v6.log" && break; sleep 0.05; done
if grep -q "Listening on ('::1', $v6port)" "$TMP/v6.log"; then
  check_eq "serves on [::1]:port" "$(curl -s "http://[::1]:$v6port/")" '{"Hello":"World"}'
else
  fail "serves on [::1]:port" "$(cat "$TMP/v6.log")"
fi
stop_server INT
finish
