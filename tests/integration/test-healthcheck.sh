# baseplate-healthcheck against a live baseplate-serve: healthy, unhealthy,
# shutting down (readiness fails, liveness passes), not listening; a UNIX
# socket; answers that are not health-check answers; a service that never
# answers (a timeout, not a hang); an interim 100 before the answer; the
# usage errors.
. "$(dirname "$0")/lib.sh"

hc() { timeout 20 "$BIN/baseplate-healthcheck" "$@" 2>&1; echo "rc=$?"; }
cp "$APPS/testapp.lua" "$TMP/"
printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.http\ndrain_time = 2 seconds\nstop_timeout = 1 second\n' > "$TMP/hc.ini"
start_server "$TMP/hc.ini" || { fail "server starts"; finish; }

# --- healthy ----------------------------------------------------------------------------
check_eq "wsgi: healthy" "$(hc wsgi "127.0.0.1:$PORT")" "OK!
rc=0"
check_eq "http is the same protocol" "$(hc http "127.0.0.1:$PORT")" "OK!
rc=0"
for probe in readiness liveness startup; do
  check_eq "--probe $probe" "$(hc wsgi "127.0.0.1:$PORT" --probe "$probe")" "OK!
rc=0"
done
check_eq "--probe=VALUE before the positionals" "$(hc --probe=liveness wsgi "127.0.0.1:$PORT")" "OK!
rc=0"
check_eq "localhost by name" "$(hc wsgi "localhost:$PORT")" "OK!
rc=0"

# --- unhealthy: the application's check fails readiness, not liveness -------------------
curl -s -X POST "$(url /sick)" > /dev/null
out=$(hc wsgi "127.0.0.1:$PORT")
check_contains "unhealthy: NOT OK with the status" "$out" "NOT OK: 503 Service Unavailable from http://127.0.0.1:$PORT/health?type=1"
check_contains "unhealthy: the answer's body" "$out" '"status":"unhealthy"'
check_contains "unhealthy: exit 1" "$out" "rc=1"
check_eq "unhealthy app: liveness still OK" "$(hc wsgi "127.0.0.1:$PORT" --probe liveness)" "OK!
rc=0"
stop_server TERM

# --- shutting down, then not listening ---------------------------------------------------
start_server "$TMP/hc.ini" || { fail "server starts again"; finish; }
check_eq "healthy before SIGTERM" "$(hc wsgi "127.0.0.1:$PORT")" "OK!
rc=0"
kill -TERM "$SERVER_PID"
wait_for_log "shutting down gracefully" 5
out=$(hc wsgi "127.0.0.1:$PORT")
check_contains "shutting down: readiness fails" "$out" 'NOT OK: 503 Service Unavailable'
check_contains "shutting down: the server says so" "$out" '"status":"shutting down"'
check_contains "shutting down: exit 1" "$out" "rc=1"
check_eq "shutting down: liveness passes" "$(hc wsgi "127.0.0.1:$PORT" --probe liveness)" "OK!
rc=0"
stop_server TERM
check_eq "not listening" "$(hc wsgi "127.0.0.1:$PORT")" "NOT OK: cannot connect to 127.0.0.1:$PORT: connection refused
rc=1"

# --- a UNIX socket -------------------------------------------------------------------------
sock=$TMP/hc.sock
(cd "$TMP" && exec "$BIN/baseplate-serve" --bind "$sock" hc.ini) > "$TMP/unix.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "Listening on" "$TMP/unix.log" && break; sleep 0.05; done
check_eq "UNIX socket: healthy" "$(hc wsgi "$sock")" "OK!
rc=0"
stop_server TERM
check_contains "UNIX socket gone" "$(hc wsgi "$sock")" "NOT OK: cannot connect to $sock: "

# --- answers that are not health-check answers -------------------------------------------
cat > "$TMP/odd.lua" <<'LUA'
local http = require("baseplate.http")
local M = {}
function M.make_app()
    local app = http.app()
    app:get("health", "/health", function(request)
        if request.query.type == "1" then return "I am fine" end
        if request.query.type == "2" then return 200, {} end
        return 404, { error = "no" }
    end)
    return app
end
return M
LUA
printf '[app:main]\nfactory = odd:make_app\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/odd.ini"
start_server "$TMP/odd.ini" || { fail "odd server starts"; finish; }
out=$(hc wsgi "127.0.0.1:$PORT")
check_contains "200 that is not JSON" "$out" "NOT OK: 200 response from http://127.0.0.1:$PORT/health?type=1 is not JSON: I am fine"
check_contains "not JSON: exit 1" "$out" "rc=1"
check_eq "200 with a JSON body" "$(hc wsgi "127.0.0.1:$PORT" --probe liveness)" "OK!
rc=0"
check_contains "404" "$(hc wsgi "127.0.0.1:$PORT" --probe startup)" "NOT OK: 404 Not Found from"
stop_server TERM

# --- a service that never answers: a timeout, not a hang -----------------------------------
PORT=$(random_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
open(sys.argv[2], "w").close()
c, _ = s.accept(); time.sleep(30)' "$PORT" "$TMP/silent.ready" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -e "$TMP/silent.ready" ] && break; sleep 0.05; done
t0=$(date +%s%3N)
out=$(hc wsgi "127.0.0.1:$PORT" --timeout 1)
t1=$(date +%s%3N)
check_contains "silent service: timed out" "$out" "NOT OK: timed out after 1 seconds waiting for http://127.0.0.1:$PORT/health?type=1"
check_contains "silent service: exit 1" "$out" "rc=1"
[ $((t1 - t0)) -lt 3000 ] && pass "gave up after --timeout ($((t1 - t0)) ms)" || fail "gave up after --timeout" "$((t1 - t0)) ms"
kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=

# --- a peer that closes without answering ---------------------------------------------------
PORT=$(random_port)
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
open(sys.argv[2], "w").close()
c, _ = s.accept(); c.recv(1000); c.close()' "$PORT" "$TMP/closer.ready" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -e "$TMP/closer.ready" ] && break; sleep 0.05; done
check_eq "closed without answering" "$(hc wsgi "127.0.0.1:$PORT")" "NOT OK: 127.0.0.1:$PORT closed the connection without answering
rc=1"
wait "$SERVER_PID" 2>/dev/null; SERVER_PID=

# --- an interim answer (100 Continue) before the real one, in its own write --------------
PORT=$(random_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
open(sys.argv[2], "w").close()
c, _ = s.accept(); c.recv(1000)
c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"); time.sleep(0.2)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"); c.close()' "$PORT" "$TMP/interim.ready" &
SERVER_PID=$!
for _ in $(seq 1 100); do [ -e "$TMP/interim.ready" ] && break; sleep 0.05; done
check_eq "100 Continue, then 200 with JSON" "$(hc wsgi "127.0.0.1:$PORT")" "OK!
rc=0"
wait "$SERVER_PID" 2>/dev/null; SERVER_PID=

# --- thrift (test-healthcheck-thrift.sh has the rest) and usage errors -----------------------
check_eq "thrift is a type: NOT OK, not a usage error" "$(hc thrift "127.0.0.1:$PORT" --probe liveness)" \
  "NOT OK: cannot connect to 127.0.0.1:$PORT: connection refused
rc=1"
out=$(hc)
check_contains "no arguments: usage" "$out" "usage: baseplate-healthcheck [-h] [--probe {readiness,liveness,startup}]"
check_contains "no arguments: argparse error" "$out" "baseplate-healthcheck: error: the following arguments are required: type, endpoint"
check_contains "no arguments: exit 2" "$out" "rc=2"
check_contains "unknown type" "$(hc grpc 127.0.0.1:1)" "baseplate-healthcheck: error: argument type: invalid choice: 'grpc' (choose from 'wsgi', 'http', 'thrift')"
out=$(hc wsgi 127.0.0.1:1 --probe sideways)
check_contains "unknown probe" "$out" "baseplate-healthcheck: error: argument --probe: invalid choice: 'sideways' (choose from 'readiness', 'liveness', 'startup')"
check_contains "unknown probe: exit 2" "$out" "rc=2"
check_contains "endpoint without a port" "$(hc wsgi localhost)" "baseplate-healthcheck: error: argument endpoint: invalid endpoint: 'localhost'"
check_contains "bad --timeout" "$(hc wsgi 127.0.0.1:1 --timeout soon)" "baseplate-healthcheck: error: argument --timeout: invalid value: 'soon'"
out=$(hc -h)
check_contains "--help" "$out" "--probe {readiness,liveness,startup}"
check_contains "--help exits 0" "$out" "rc=0"
finish
