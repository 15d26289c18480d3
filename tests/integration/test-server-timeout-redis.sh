# Server timeouts (server_timeout.*) end to end: a real server, curl, a real
# redis-server with calls in flight when the timeout fires, the StatsD
# datagrams it sends, and a python3-thrift client against the Thrift server.
. "$(dirname "$0")/lib.sh"

cp "$APPS/timeoutapp.lua" "$TMP/"
REDIS_URL=${BP_TEST_REDIS_URL:?set by ctest}

# many PATH N: N concurrent requests; their statuses, sorted, on one line
many() {
  local pids= i
  for i in $(seq 1 "$2"); do
    curl -s -o /dev/null -w '%{http_code}\n' "$(url "$1")" > "$TMP/code.$i" & pids="$pids $!"
  done
  wait $pids
  for i in $(seq 1 "$2"); do cat "$TMP/code.$i"; done | sort | tr '\n' ' '
}

# serve_with "app lines" ["server lines"]: timeoutapp with these [app:main] keys
serve_with() {
  printf '[app:main]\nfactory = timeoutapp:make_app\ncache.url = %s\ncache.max_connections = 2\n%b\n[server:main]\nfactory = baseplate.server.http\n%b\n' \
    "$REDIS_URL" "$1" "${2:-}" > "$TMP/t.ini"
  start_server "$TMP/t.ini" "${@:3}"
}

code() { curl -s -o "$TMP/body" -w '%{http_code}' "$(url "$1")"; }

# --- configuration errors name the key -------------------------------------------------
for bad in "server_timeout.default = soon" "server_timeout.by_endpoint.sleep = -1 seconds" \
  "server_timeout.debug = maybe" "server_timeout.default = 0 seconds"; do
  key=${bad%% =*}
  printf '[app:main]\nfactory = timeoutapp:make_app\ncache.url = %s\n%s\n[server:main]\nfactory = baseplate.server.http\n' \
    "$REDIS_URL" "$bad" > "$TMP/bad.ini"
  check_contains "a bad value: $bad" "$(cd "$TMP" && "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1 | tail -1)" \
    "bad.ini: [app:main] $key: "
done

# --- HTTP, with metrics ----------------------------------------------------------------
start_capture
serve_with "metrics.namespace = svc\nmetrics.endpoint = 127.0.0.1:$UDP_PORT
server_timeout.default = 200 milliseconds\nserver_timeout.by_endpoint.fast = infinite
server_timeout.by_endpoint.hold = infinite
server_timeout.by_endpoint.medium = 2 seconds\nserver_timeout.debug = true" \
  "monitoring.blocked_hub = 100 milliseconds" --debug \
  || { fail "server starts"; finish; }
check_eq "no deprecation warning with a default" "$(grep -c 'No server_timeout.default configured' "$LOG")" 0
check_contains "server_timeout is not listed as unconfigured" "$(cat "$LOG")" \
  "The following observers are unconfigured and won't run: tracing, sentry\""

check_eq "a request within its time" "$(code /sleep/0.01)" 200
reset
start=$(date +%s.%N)
check_eq "a request past its time gets 504" "$(code /sleep/2)" 504
took=$(echo "$(date +%s.%N) - $start" | bc)
check_eq "after about 0.2 s" "$(echo "$took > 0.15 && $took < 1.0" | bc)" 1
check_eq "with the server's error body" "$(cat "$TMP/body")" '{"error": 504, "reason": "Gateway Timeout"}'
check_contains "the log line" "$(cat "$LOG")" "Server timed out processing for 'sleep' after 0.20 seconds"
check_contains "with the traceback (debug)" "$(cat "$LOG")" \
  "Server timed out processing for 'sleep' after 0.20 seconds\\nstack traceback:"
check_contains "... of where the coroutine waited" "$(grep 'timed out processing' "$LOG")" "timeoutapp.lua:19"
check_eq "the span fails, is counted as timed out, and errors.ServerTimeout" "$(lines | sort)" "svc.errors.ServerTimeout:1|c
svc.server.sleep.failure:1|c
svc.server.sleep.timed_out:1|c
svc.server.sleep:N|ms"
reset

check_eq "by_endpoint infinite: no timeout" "$(code /fast/0.4)" 200
check_eq "by_endpoint overrides the default" "$(code /medium/0.4)" 200
check_eq "... with its own time" "$(code /medium/3)" 504
check_contains "... in the log line" "$(cat "$LOG")" "Server timed out processing for 'medium' after 2.00 seconds"

# A handler that catches the interruption and waits again: its waits fail
# at once, and what it returns does not reach the client.
out=$(curl -s -i "$(url /stubborn)")
check_contains "a stubborn handler's client gets 504" "$out" "HTTP/1.1 504"
check_eq "one response only" "$(echo "$out" | grep -c '^HTTP/')" 1
check_eq "its later waits fail at once" "$(curl -s "$(url /after/stubborn)")" \
  'ok=false first=sleep: interrupted second=sleep: interrupted'
# Keep-alive: the next request on the same connection is served normally.
out=$(curl -s -w ' %{http_code}\n' "$(url /stubborn)" "$(url /sleep/0.01)")
check_eq "the connection serves the next request" "$out" '{"error": 504, "reason": "Gateway Timeout"} 504
{"slept":true} 200'

# Redis calls in flight (BLPOP 2 s) on both pool connections, and a third
# request waiting for a slot: all end at the timeout; the pool keeps its size.
check_eq "Redis calls in flight end with 504" "$(many /blpop 3)" "504 504 504 "
check_contains "the pool has none in use" "$(curl -s "$(url /pool)")" '"in_use":0'
# Both slots at once: two requests each hold a connection in a BLPOP until
# the test pushes two items, which it does only once redis-server sees both
# waiting (with a slot lost, the second request would wait for the first's
# connection, and only one BLPOP would ever be seen).
many /hold 2 > "$TMP/hold.codes" & hold_pid=$!
blocked=0
for _ in $(seq 1 100); do
  blocked=$(redis-cli -u "$REDIS_URL" client list | grep -c ' flags=b ')
  [ "$blocked" -ge 2 ] && break
  sleep 0.05
done
check_eq "both pool slots held at once (BLPOPs seen together)" "$blocked" 2
redis-cli -u "$REDIS_URL" rpush hold-go a b >/dev/null
wait $hold_pid
check_eq "the pool serves its full size afterwards" "$(cat "$TMP/hold.codes")" "200 200 "
pool=$(curl -s "$(url /pool)")
check_contains "two connections open" "$pool" '"open":2'
check_contains "both idle" "$pool" '"open_and_available":2'
check_eq "redis-server sees no more than the pool's connections" \
  "$(redis-cli -u "$REDIS_URL" client list | grep -vc 'cmd=client')" 2

# A handler that never yields: not interruptible, reported by the blocked-loop monitor.
check_eq "a handler that never waits answers" "$(code /busy)" 200
check_eq "... and is reported as blocking the loop" "$(wait_for_log "event loop blocked for" 3 && echo yes)" yes

stop_server
check_eq "the server stops cleanly" "$SERVER_RC" 0

# --- no default: the deprecation warning, once -------------------------------------------
serve_with "server_timeout.by_endpoint.sleep = 100 milliseconds" || { fail "server starts (no default)"; finish; }
check_eq "the deprecation warning, once" "$(grep -c "No server_timeout.default configured. Defaulting to no timeout. Set the default timeout to 'infinite' or a timespan like '2 seconds'. This will become mandatory in Baseplate.py 2.0." "$LOG")" 1
check_eq "no default: other endpoints have no timeout" "$(code /fast/0.3)" 200
check_eq "by_endpoint still applies" "$(code /sleep/2)" 504
check_eq "the log line without debug has no traceback" "$(grep -c 'after 0.10 seconds", ' "$LOG")" 1
stop_server

# --- no keys: nothing changes -----------------------------------------------------------
serve_with "" || { fail "server starts (no keys)"; finish; }
check_contains "listed as unconfigured" "$(cat "$LOG")" "won't run: metrics, tracing, sentry, server_timeout"
check_eq "no timeout without the keys" "$(code /sleep/0.3)" 200
stop_server

# --- Thrift ---------------------------------------------------------------------------
PY=/usr/bin/python3
cp -r "$APPS/thriftapp.lua" "$APPS/thrift" "$TMP/"
printf '[app:main]\nfactory = thriftapp:make_processor\nserver_timeout.default = infinite\nserver_timeout.by_endpoint.sleep = 200 milliseconds\n[server:main]\nfactory = baseplate.server.thrift\n' > "$TMP/th.ini"
start_server "$TMP/th.ini" || { fail "the Thrift server starts"; finish; }
out=$($PY "$SOURCE_DIR/tests/integration/tools/thrift_timeout_client.py" "$PORT" "$TMP/thrift" 2>&1)
echo "$out" | grep -v '^[0-9]* passed'
PASSED=$((PASSED + $(echo "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(echo "$out" | grep -c '^FAILED ')))
case "$out" in *" passed, "*) ;; *) fail "the Python client ran to the end" "$out" ;; esac
check_contains "the Thrift log line" "$(cat "$LOG")" "Server timed out processing for 'sleep' after 0.20 seconds"
stop_server
check_eq "the Thrift server stops cleanly" "$SERVER_RC" 0

finish
