#!/usr/bin/env bash
# AMQP against a real RabbitMQ (the services fixture, tests/services.sh):
# the consumer factory (baseplate.frameworks.queue_consumer.amqp) under
# baseplate.server.queue_consumer and the producer (baseplate.clients.amqp)
# through configure_context. Messages go through the broker and every
# handling is counted: each message handled once, the trace continued from
# the producer's headers, the error handler's requeue and reject, a broken
# body, the broker restarted under load (nothing confirmed is lost, nothing
# handled twice but what was in flight), a broker that stops answering
# (heartbeats), and the graceful shutdown.
. "$(dirname "$0")/lib.sh"
: "${BP_TEST_AMQP_URL:?set by ctest}"
cp "$APPS/amqpapp.lua" "$TMP/"
OUT=$TMP/out.txt
Q=bp.test.q$$
EX=bp.test.ex$$

# consumer "app lines" "server lines"
consumer() {
  : > "$OUT"
  printf '[app:main]\nfactory = amqpapp:make_consumer\namqp.hostname = %s\namqp.exchange_name = %s\namqp.exchange_type = topic\namqp.queue_name = %s\namqp.routing_keys = bp.test, other.key\namqp.heartbeat = 2 seconds\nmetrics.namespace = amqptest\nmetrics.log_if_unconfigured = true\ntest.out = %s\n%b\n[server:main]\nfactory = baseplate.server.queue_consumer\n%b\n' \
    "$BP_TEST_AMQP_URL" "$EX" "$Q" "$OUT" "$1" "$2" > "$TMP/c.ini"
  start_server "$TMP/c.ini" --debug
}
publish() { # COUNT FIRST WIDTH
  (cd "$TMP" && timeout 90 "$BIN/baseplate-script" c.ini amqpapp:publish "$@" 2>>"$TMP/publish.err")
}
handled() { grep -c '^handled' "$OUT"; }
wait_handled() { # N SECONDS
  for _ in $(seq 1 $(($2 * 20))); do [ "$(handled)" -ge "$1" ] && return 0; sleep 0.05; done
  return 1
}
# the numbers handled more than once
twice() { grep '^handled' "$OUT" | awk '{print $2}' | sort -n | uniq -d | wc -l; }
unique() { grep '^handled' "$OUT" | awk '{print $2}' | sort -un | wc -l; }

# --- messages through the broker, a span each, the trace continued ----------------------------------
consumer "" "max_concurrency = 4" || { fail "the consumer starts"; finish; }
out=$(publish 200 1 4)
check_contains "the producer published 200, each confirmed" "$out" "published 200"
wait_handled 200 20
check_eq "200 handled" "$(handled)" 200
check_eq "each once" "$(unique) $(twice)" "200 0"
check_eq "none redelivered" "$(grep -c 'redelivered true' "$OUT")" 0
trace=$(echo "$out" | sed -n 's/^trace //p')
check_eq "the consumer's spans continue the producer's trace (X-Trace)" \
  "$(grep -o 'trace [0-9]*' "$OUT" | sort -u)" "trace $trace"
check_eq "... as children of the publisher's request (X-Parent)" "$(grep -o 'parent [0-9]*' "$OUT" | sort -u)" \
  "parent $trace"
check_contains "a server span per message, named after the queue" "$(cat "$LOG")" "amqptest.server.$Q"
check_contains "health check" "$(curl -s "$(url /health)")" "all good, boss"

# --- a failed message: the default error policy requeues it -----------------------------------------
stop_server TERM
check_eq "SIGTERM: exit 0" "$SERVER_RC" 0
consumer "test.fail_at = 3" "max_concurrency = 2" || fail "the consumer starts"
publish 5 1 1 >/dev/null
wait_handled 5 10
check_eq "the failed message was requeued and handled again" "$(grep '^handled 3 ' "$OUT" | awk '{print $4}')" true
check_contains "the failure was logged" "$(cat "$LOG")" "Unhandled error while trying to process a message."
check_contains "... and failed its span (metrics)" "$(cat "$LOG")" "amqptest.server.$Q.failure"
stop_server TERM

# --- the error handler decides: reject; a body that is not JSON --------------------------------------
consumer "test.fail_at = 2\ntest.on_error = reject" "max_concurrency = 2" || fail "the consumer starts"
publish 3 1 1 >/dev/null
wait_handled 2 10
(cd "$TMP" && timeout 20 "$BIN/baseplate-script" c.ini amqpapp:publish_raw 'not json{' >/dev/null 2>&1)
for _ in $(seq 1 100); do [ "$(grep -c '^error' "$OUT")" -ge 2 ] && break; sleep 0.05; done
sleep 0.3
check_eq "the error handler got message 2 with its context, and rejected it" \
  "$(grep '^error 2' "$OUT")" "error 2 failing message 2 context true"
check_eq "a rejected message is not delivered again" "$(grep -c '^handled 2 ' "$OUT")" 0
check_contains "a body that does not decode reaches the error handler (no body)" "$(grep '^error nil' "$OUT")" "context true"
check_contains "invalid trace headers start a new trace" "$(cat "$LOG")" "amqptest.server.$Q"
stop_server TERM

# --- the broker restarted under load ------------------------------------------------------------------
consumer "test.delay = 0.005" "max_concurrency = 8" || fail "the consumer starts"
publish 1500 1 8 > "$TMP/pub.txt" &
pub=$!
for _ in $(seq 1 200); do [ "$(handled)" -ge 200 ] && break; sleep 0.05; done
before=$(handled)
"$SOURCE_DIR/tests/services.sh" amqp-restart "$BUILD_DIR"
wait "$pub"
check_contains "the producer got all 1500 confirmed (retrying what the restart cut)" "$(cat "$TMP/pub.txt")" \
  "published 1500"
wait_handled 1500 60
dups=$(twice)
check_eq "every confirmed message was handled (restart after $before handled)" "$(unique)" 1500
retries=$(sed -n 's/^retries //p' "$TMP/pub.txt")
# A message is handled twice only when its first handling's ack was cut by
# the restart (at most prefetch = 8 + 4 per connection), or when a publish
# whose confirm was cut was sent again.
limit=$((12 + retries))
if [ "$dups" -le "$limit" ]; then pass "handled twice: $dups (at most the 12 unacked + $retries republished)"; else
  fail "handled twice only what was in flight" "$dups > $limit"; fi
check_eq "never handled three times" "$(grep '^handled' "$OUT" | awk '{print $2}' | sort -n | uniq -c | awk '$1 > 2' | wc -l)" 0
# The old connection may deliver every message before the broker closes it
# (a slow run): the reconnection can come after the last message, so wait
# for it rather than assume it came first.
wait_for_log "reconnecting" 30
check_contains "the consumer saw the connection go" "$(cat "$LOG")" "reconnecting"
wait_for_log "consuming again on a new connection" 30
check_contains "... and consumed again on a new connection" "$(cat "$LOG")" "consuming again on a new connection"
stop_server TERM
check_eq "exit 0 after the restart" "$SERVER_RC" 0

# --- a broker that stops answering: heartbeats find it, the consumer comes back -------------------------
consumer "" "max_concurrency = 2" || fail "the consumer starts"
publish 3 1 1 >/dev/null
wait_handled 3 10
pid=$(cat "$BUILD_DIR/test-services/rabbitmq/rabbit.pid")
kill -STOP "$pid"
wait_for_log "nothing from the broker for 4 seconds" 10
check_contains "a silent broker breaks the connection after two heartbeats (2 s)" "$(cat "$LOG")" \
  "nothing from the broker for 4 seconds"
kill -CONT "$pid"
wait_for_log "consuming again on a new connection" 30
publish 3 10 1 >/dev/null
wait_handled 6 20
check_eq "... and consumes again when it is back" "$(unique)" 6
stop_server TERM
check_eq "exit 0" "$SERVER_RC" 0

# --- examples/amqp-worker: consumes, counts in Redis, publishes on ---------------------------------------
: "${BP_TEST_REDIS_URL:?set by ctest}"
mkdir -p "$TMP/ex"
cp "$SOURCE_DIR/examples/amqp-worker/worker.lua" "$TMP/ex/"
sed -e "s|amqp://guest:guest@127.0.0.1:5672|${BP_TEST_AMQP_URL%/}|" -e "s|redis://127.0.0.1:6379/0|$BP_TEST_REDIS_URL|" \
  -e "s|= links_q|= links_q$$|" -e "s|= links$|= links$$|" "$SOURCE_DIR/examples/amqp-worker/worker.ini" > "$TMP/ex/worker.ini"
start_server "$TMP/ex/worker.ini" || fail "the example worker starts"
out=$(cd "$TMP/ex" && timeout 30 "$BIN/baseplate-script" worker.ini worker:publish 5 2>&1)
check_contains "the example publishes" "$out" "published 5"
wait_for_log "link 5 seen" 10
check_eq "the example worker handled the 5 links" "$(grep -c 'seen [0-9]* times' "$LOG")" 5
stop_server TERM
check_eq "exit 0" "$SERVER_RC" 0

# --- configuration errors name the key ---------------------------------------------------------------
printf '[app:main]\nfactory = amqpapp:make_consumer\namqp.hostname = http://x\namqp.queue_name = q\ntest.out = %s\n[server:main]\nfactory = baseplate.server.queue_consumer\nmax_concurrency = 1\n' "$OUT" > "$TMP/bad.ini"
out=$(cd "$TMP" && timeout 10 "$BIN/baseplate-serve" --bind 127.0.0.1:0 bad.ini 2>&1; echo "rc=$?")
check_contains "a bad hostname names the key" "$out" "amqp.hostname: only amqp:// URLs are supported"
printf '[app:main]\nfactory = amqpapp:make_consumer\namqp.hostname = amqp://u:secretpw@127.0.0.1:1\namqp.queue_name = q\namqp.connect_timeout = 1 second\ntest.out = %s\n[server:main]\nfactory = baseplate.server.queue_consumer\nmax_concurrency = 1\n' "$OUT" > "$TMP/down.ini"
start_server "$TMP/down.ini" || fail "a consumer whose broker is down starts"
wait_for_log "cannot consume" 10
check_contains "a broker that is down: retried, with the reason" "$(cat "$LOG")" "cannot consume: amqp 127.0.0.1:1: connect failed"
if grep -q secretpw "$LOG"; then fail "the password never reaches the log"; else pass "the password never reaches the log"; fi
stop_server TERM
check_eq "exit 0" "$SERVER_RC" 0
finish
