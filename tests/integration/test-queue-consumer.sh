#!/usr/bin/env bash
# The queue-consumer server (baseplate.server.queue_consumer) with a consumer
# of its own (apps/consumerapp.lua): max_concurrency, a server span per
# message, the health check, graceful shutdown within stop_timeout, and a
# pump or handler that dies ending the server as a SIGTERM would.
. "$(dirname "$0")/lib.sh"
cp "$APPS/consumerapp.lua" "$TMP/"
OUT=$TMP/out.txt

# consumer "app lines" "server lines"
consumer() {
  : > "$OUT"
  printf '[app:main]\nfactory = consumerapp:make_consumer\ntest.out = %s\n%b\n[server:main]\nfactory = baseplate.server.queue_consumer\n%b\n' \
    "$OUT" "$1" "$2" > "$TMP/c.ini"
  start_server "$TMP/c.ini" --debug
}
count() { grep -c "^$1" "$OUT"; }

# --- concurrency, spans, health ----------------------------------------------------------------
consumer "test.messages = 12\ntest.delay = 0.2\nmetrics.namespace = q\nmetrics.log_if_unconfigured = true" "max_concurrency = 3" \
  || { fail "the consumer starts"; finish; }
check_eq "health: Baseplate.py's answer" "$(curl -s -w ' %{http_code} %{content_type}' "$(url /health)")" \
  '{"fun message": "all good, boss"} 200 application/json'
check_eq "... on any probe" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=liveness')")" 200
check_eq "... an unknown probe is a 400" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=bogus')")" 400
for _ in $(seq 1 100); do [ "$(count done)" -ge 12 ] && break; sleep 0.05; done
check_eq "all 12 messages handled" "$(count done)" 12
check_eq "never more than max_concurrency (3) at once, and 3 at once" "$(grep -o 'max [0-9]*' "$OUT" | sort -u | tail -1)" "max 3"
check_eq "each message in its own trace" "$(grep -o 'trace [0-9]*' "$OUT" | sort -u | wc -l)" 12
check_contains "a server span per message (its metrics)" "$(cat "$LOG")" "q.server.consumer.test"
check_contains "the span's log lines carry its trace ID" "$(grep 'Would send metric' "$LOG" | head -1)" '"traceID"'
stop_server TERM
check_eq "SIGTERM: exit 0" "$SERVER_RC" 0
check_contains "the pump was stopped" "$(cat "$OUT")" "pump stopped"

# --- graceful shutdown: in-flight messages finish, queued ones are given back --------------------
consumer "test.messages = 50\ntest.delay = 0.5" "max_concurrency = 4" || fail "the consumer starts"
for _ in $(seq 1 100); do [ "$(count start)" -ge 4 ] && break; sleep 0.02; done
sleep 0.1
stop_server TERM
check_eq "exit 0" "$SERVER_RC" 0
check_eq "the 4 in flight finished" "$(count start) $(count done)" "4 4"
check_eq "the 6 queued (4 + 4/2) were given back, none lost" "$(grep '^given back' "$OUT")" "given back 6 from 5"

# --- stop_timeout: a handler that does not finish --------------------------------------------------
consumer "test.messages = 3\ntest.delay = 0.1\ntest.slow_at = 3" "max_concurrency = 3\nstop_timeout = 1 second" \
  || fail "the consumer starts"
for _ in $(seq 1 100); do [ "$(count done)" -ge 2 ] && break; sleep 0.02; done
t0=$(date +%s%N)
stop_server TERM
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check_eq "exit 0 after stop_timeout" "$SERVER_RC" 0
if [ "$ms" -ge 900 ] && [ "$ms" -lt 5000 ]; then pass "stopped after about 1 s ($ms ms)"; else fail "stopped after about 1 s" "$ms ms"; fi
check_contains "the warning" "$(cat "$LOG")" "stop_timeout (1s) reached with requests still in flight; exiting"

# --- a custom health check; readiness fails while draining ------------------------------------------
consumer "test.messages = 1\ntest.unhealthy = true" "max_concurrency = 1\ndrain_time = 2 seconds" \
  || fail "the consumer starts"
check_eq "health_check_fn false: 503, Baseplate.py's text" \
  "$(curl -s -w ' %{http_code}' "$(url '/health?type=readiness')")" "he's dead jim 503"
check_eq "... it sees the probe (liveness: true)" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=liveness')")" 200
kill -TERM "$SERVER_PID"
sleep 0.3
check_eq "liveness still answers while draining" "$(curl -s -o /dev/null -w '%{http_code}' "$(url '/health?type=liveness')")" 200
stop_server TERM
check_eq "exit 0" "$SERVER_RC" 0

# --- a handler that dies ends the server like a SIGTERM ----------------------------------------------
consumer "test.messages = 5\ntest.delay = 0.05\ntest.fatal_at = 3" "max_concurrency = 1" || fail "the consumer starts"
for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
wait "$SERVER_PID"; rc=$?; SERVER_PID=
check_eq "the server stopped by itself, exit 0" "$rc" 0
check_contains "with Baseplate.py's log line" "$(cat "$LOG")" "Unhandled error in pump or handler thread, terminating."
check_contains "... and the error" "$(cat "$LOG")" "a bug in the handler"
check_contains "then the usual graceful shutdown" "$(cat "$LOG")" "SIGTERM received: shutting down gracefully"
check_eq "messages after it were not handled" "$(count done)" 2

# --- server timeouts apply to each message, and Sentry hears of the failure ---------------------------
PY=/usr/bin/python3
EVENTS=$TMP/events
mkdir -p "$TMP/ctl"
$PY "$SOURCE_DIR/tests/integration/tools/sentry_sink.py" "$TMP/sink.port" "$EVENTS" "$TMP/ctl" &
SINK_PID=$!
trap 'cleanup; kill "$SINK_PID" 2>/dev/null' EXIT
for _ in $(seq 1 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
consumer "test.messages = 3\ntest.delay = 0.05\ntest.slow_at = 2\nserver_timeout.default = 300 milliseconds\nmetrics.namespace = q\nmetrics.log_if_unconfigured = true\nsentry.dsn = http://pub:s3cret@127.0.0.1:$(cat "$TMP/sink.port")/7" \
  "max_concurrency = 1" || fail "the consumer starts"
for _ in $(seq 1 100); do [ "$(count done)" -ge 2 ] && break; sleep 0.05; done
check_eq "the slow message is interrupted at its wait and fails as ServerTimeout; the next is handled" \
  "$(grep -E '^(done|interrupted|failed)' "$OUT" | tr '\n' ' ')" "done 1 interrupted 2 failed 2 ServerTimeout done 3 "
check_contains "the log line" "$(cat "$LOG")" "Server timed out processing for 'consumer.test' after 0.30 seconds"
check_contains "the span's timed_out counter" "$(cat "$LOG")" "q.server.consumer.test.timed_out:1|c"
stop_server TERM
check_eq "a Sentry event: ServerTimeout, the span's name as the transaction" \
  "$($PY -c 'import json,sys; e=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(len(e), e[0]["problems"], e[0]["event"]["exception"]["values"][0]["type"], e[0]["event"]["transaction"])' "$EVENTS")" \
  "1 [] ServerTimeout consumer.test"

# --- configuration errors ----------------------------------------------------------------------------
printf '[app:main]\nfactory = consumerapp:make_consumer\ntest.out = %s\n[server:main]\nfactory = baseplate.server.queue_consumer\n' "$OUT" > "$TMP/bad.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1)
check_contains "max_concurrency is required" "$out" "[server:main] max_concurrency"
printf '[app:main]\nfactory = consumerapp:nothing\n[server:main]\nfactory = baseplate.server.queue_consumer\nmax_concurrency = 1\n' > "$TMP/bad.ini"
printf 'local M = {}\nfunction M.nothing() return { x = 1 } end\nreturn M\n' > "$TMP/notconsumer.lua"
sed -i 's/consumerapp:nothing/notconsumer:nothing/' "$TMP/bad.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1)
check_contains "an app that is not a consumer factory" "$out" "expected a queue consumer factory (with build_pump_worker and build_message_handler)"
finish
