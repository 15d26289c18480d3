# The serve lifecycle: [server] keys, health checks, slow clients, idle
# connections, max_concurrency, SIGUSR1, and graceful shutdown.
. "$(dirname "$0")/lib.sh"

ms() { date +%s%3N; }

# --- bad [server] keys are start-up errors naming the key ---------------------
cp "$APPS/testapp.lua" "$TMP/"
printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.http\nmax_concurrency = -1\n' > "$TMP/t.ini"
check_eq "negative max_concurrency" "$(cd "$TMP" && "$BIN/baseplate-serve" t.ini 2>&1)" \
  "baseplate-serve: error: t.ini: [server:main] max_concurrency: expected a whole number from 0 to 1000000, got \"-1\""
printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.http\nstop_timeout = soon\n' > "$TMP/t.ini"
check_contains "bad stop_timeout" "$(cd "$TMP" && "$BIN/baseplate-serve" t.ini 2>&1)" \
  't.ini: [server:main] stop_timeout: expected a timespan such as "30 seconds" or a number of seconds, got "soon"'

printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.http\nmax_header_size = 0\n' > "$TMP/t.ini"
check_eq "max_header_size too small" "$(cd "$TMP" && "$BIN/baseplate-serve" t.ini 2>&1)" \
  "baseplate-serve: error: t.ini: [server:main] max_header_size: expected a whole number from 1024 to 2147483648, got \"0\""

start_server "$APPS/lifecycle.ini" || { fail "server starts"; finish; }

# --- health checks ----------------------------------------------------------------
out=$(curl -s -w ' %{http_code}' "$(url /health)")
check_contains "readiness by default: healthy" "$out" '"status":"healthy"'
check_contains "readiness by default: probe" "$out" '"probe":"readiness"'
check_contains "readiness by default: 200" "$out" '} 200'
check_contains "probe by name, any case" "$(curl -s "$(url '/health?type=LIVENESS')")" '"probe":"liveness"'
check_contains "probe by number" "$(curl -s "$(url '/health?type=3')")" '"probe":"startup"'
curl -s -X POST "$(url /sick)" > /dev/null
out=$(curl -s -w ' %{http_code}' "$(url /health)")
check_contains "the app's own check: unhealthy" "$out" '"status":"unhealthy"'
check_contains "the app's own check: 503" "$out" '} 503'
check_eq "the app's own check: liveness" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=liveness')")" 200
check_eq "unknown probe: 400" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=bogus')")" 400

# --- Expect: 100-continue and chunked request bodies ----------------------------------
head -c 5000 /dev/zero | tr '\0' 'x' > "$TMP/body"
out=$(curl -sv -H 'Expect: 100-continue' --data-binary @"$TMP/body" "$(url /echo)" 2>&1)
check_contains "100 Continue sent" "$out" "HTTP/1.1 100 Continue"
check_contains "then the answer" "$out" "X-Length: 5000"
out=$(curl -s -D - -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/body" "$(url /echo)" | tr -d '\r' | grep X-Length)
check_eq "chunked request body" "$out" "X-Length: 5000"

# --- slow clients: 408 then close -----------------------------------------------------
t0=$(ms)
out=$(RAW_TIMEOUT=5 raw "GET / HTTP/1.1\r\nHost: x\r\n" | tr -d '\r' | head -n 1)
t1=$(ms)
check_eq "unfinished request head: 408" "$out" "HTTP/1.1 408 Request Timeout"
if [ $((t1 - t0)) -lt 2500 ]; then pass "408 after header_timeout ($((t1 - t0)) ms)"; else fail "408 after header_timeout" "$((t1 - t0)) ms"; fi

# A byte-per-second sender cannot hold a connection past header_timeout.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
(for ch in G E T ' ' / ' ' H T T P; do printf '%s' "$ch" >&3 || break; sleep 0.3; done) 2>/dev/null &
trickle=$!
t0=$(ms)
out=$(timeout 6 cat <&3 | tr -d '\r' | head -n 1)
t1=$(ms)
exec 3<&-
kill "$trickle" 2>/dev/null; wait "$trickle" 2>/dev/null
check_eq "trickling sender: 408" "$out" "HTTP/1.1 408 Request Timeout"
if [ $((t1 - t0)) -lt 2500 ]; then pass "trickling sender cut at header_timeout ($((t1 - t0)) ms)"; else fail "trickling sender cut at header_timeout" "$((t1 - t0)) ms"; fi

# --- idle keep-alive connections are closed after keepalive_timeout ------------------------
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /text HTTP/1.1\r\nHost: x\r\n\r\n' >&3
t0=$(ms)
out=$(timeout 6 cat <&3 | tr -d '\r')
t1=$(ms)
exec 3<&-
check_contains "answered on the kept-alive connection" "$out" "plain text"
if [ $((t1 - t0)) -lt 2500 ]; then pass "idle connection closed by the server ($((t1 - t0)) ms)"; else fail "idle connection closed by the server" "$((t1 - t0)) ms"; fi
check_eq "still serving" "$(curl -s "$(url /)")" '{"Hello":"World"}'

# --- max_concurrency = 2: a third connection waits in the backlog -----------------------------
exec 4<>"/dev/tcp/127.0.0.1/$PORT"
exec 5<>"/dev/tcp/127.0.0.1/$PORT"
sleep 0.2
curl -s -o "$TMP/third" -w '%{http_code}' --max-time 5 "$(url /)" > "$TMP/third.code" &
third=$!
sleep 0.5
if kill -0 "$third" 2>/dev/null; then pass "third connection waits while two are open"; else fail "third connection waits while two are open" "$(cat "$TMP/third.code")"; fi
exec 4<&-
wait "$third"
check_eq "served once a slot frees" "$(cat "$TMP/third.code") $(cat "$TMP/third")" '200 {"Hello":"World"}'
exec 5<&-
sleep 0.2

# --- SIGUSR1: tracebacks of in-flight requests, server unharmed ----------------------------------
curl -s "$(url /sleep/1500)" -o "$TMP/slow" &
slow=$!
wait_for_log "sleeping 1500 ms"
kill -USR1 "$SERVER_PID"
sleep 0.3
check_contains "SIGUSR1 names the in-flight request and route" "$(cat "$LOG")" "in flight: request GET /sleep/1500 (route sleep)"
check_contains "SIGUSR1 logs its traceback" "$(grep 'in flight' "$LOG")" "stack traceback:"
check_contains "SIGUSR1 count" "$(cat "$LOG")" "SIGUSR1: 1 coroutine(s) in flight"
wait "$slow"
check_contains "the request still completes" "$(cat "$TMP/slow")" '"slept":1.'

# --- graceful shutdown: drain_time, readiness, in-flight requests finish ----------------------------
# One request in flight (max_concurrency leaves the other slot for the checks).
curl -s -w ' %{http_code}' "$(url /sleep/1800)" -o "$TMP/inflight" > "$TMP/inflight.code" &
inflight=$!
wait_for_log "sleeping 1800 ms"
t0=$(ms)
kill -TERM "$SERVER_PID"
sleep 0.1
check_contains "shutdown logged" "$(cat "$LOG")" "SIGTERM received: shutting down gracefully (drain_time 1s, stop_timeout 2s)"
out=$(curl -s -w ' %{http_code}' "$(url /health)")
check_contains "readiness fails while draining" "$out" '"status":"shutting down"'
check_contains "readiness fails with 503" "$out" '} 503'
check_eq "liveness still passes" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=liveness')")" 200
check_eq "SERVER_STATE.shutting_down visible to handlers" "$(curl -s "$(url /shutting_down)")" '{"shutting_down":true}'
check_contains "responses during shutdown say Connection: close" "$(curl -s -D - -o /dev/null "$(url /)" | tr -d '\r')" "Connection: close"
sleep 1
check_eq "new connections refused after drain_time" "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /)")" "000"
wait "$inflight"
check_eq "in-flight request completed" "$(cat "$TMP/inflight.code")" " 200"
stop_server TERM   # a second SIGTERM changes nothing; wait for the exit
t1=$(ms)
check_eq "exit status 0" "$SERVER_RC" 0
if [ $((t1 - t0)) -lt 3500 ]; then pass "exited after drain_time, within stop_timeout ($((t1 - t0)) ms)"; else fail "exited in time" "$((t1 - t0)) ms"; fi

# --- stop_timeout: a request that would outlive it does not keep the process -----------------------
start_server "$APPS/lifecycle.ini" || { fail "server restarts"; finish; }
curl -s --max-time 20 "$(url /sleep/15000)" -o /dev/null &
longreq=$!
wait_for_log "sleeping 15000 ms"
t0=$(ms)
stop_server TERM
t1=$(ms)
check_eq "exit status 0 after stop_timeout" "$SERVER_RC" 0
if [ $((t1 - t0)) -lt 4500 ]; then pass "exited at drain_time + stop_timeout ($((t1 - t0)) ms)"; else fail "exited at stop_timeout" "$((t1 - t0)) ms"; fi
check_contains "stop_timeout warning" "$(cat "$LOG")" "stop_timeout (2s) reached with requests still in flight; exiting"
kill "$longreq" 2>/dev/null
finish
