#!/usr/bin/env bash
# The FastConsumerFactory's semantics (Baseplate.py's): messages are handled
# concurrently, up to max_concurrency at once, even from one partition
# (the in-order factory, for contrast, handles one partition's messages one
# at a time); offsets are committed whether the messages were handled or
# not: a handler's error stops the server (exit 0, as a SIGTERM), and
# neither the failing message nor the ones consumed but not handled come
# back after a restart — the latter are logged with their offsets. Against
# librdkafka's mock cluster (tests/kafka-mock.c).
. "$(dirname "$0")/lib.sh"
cp "$APPS/kafkaapp.lua" "$TMP/"
. "$(dirname "$0")/kafka-lib.sh"
start_kafka_mock 1
# worker NAME OUT TOPIC GROUP "app lines": a consumer with max_concurrency 8
worker() {
  local name=$1
  printf '[app:main]\nfactory = kafkaapp:make_consumer\ntest.out = %s\nkafka.bootstrap_servers = %s\nkafka.topics = %s\nkafka.group_id = test.%s\nkafka.consume_batch_size = 4\nkafka.librdkafka.heartbeat.interval.ms = 200\nkafka.librdkafka.session.timeout.ms = 6000\n%b\n[server:main]\nfactory = baseplate.server.queue_consumer\nmax_concurrency = 8\nstop_timeout = 10 seconds\n' \
    "$2" "$BOOT" "$3" "$4" "$5" > "$TMP/$name.ini"
  (cd "$TMP" && exec "$BIN/baseplate-serve" --bind "127.0.0.1:$(random_port)" "$name.ini") > "$TMP/$name.log" 2>&1 &
  eval "PID_$name=$!"
  PIDS="${PIDS:-} $!"
}
count() { cat "$1" 2>/dev/null | grep -c "^n="; }
wait_count() { for _ in $(seq 1 $(( $3 * 20 ))); do [ "$(count "$1")" -ge "$2" ] && return 0; sleep 0.05; done; return 1; }
max_inflight() { grep -o 'inflight=[0-9]*' "$1" | cut -d= -f2 | sort -n | tail -1; }
stop() {
  kill -TERM "$1"
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$1" 2>/dev/null; then kill -KILL "$1"; RC=timeout; else wait "$1"; RC=$?; fi
}

# --- concurrency: 24 messages of 0.5 s on ONE partition -------------------------------------------
mock "topic one 1"
mock "produce one 24 0"
check_eq "24 messages produced on one partition" "$(tail -1 "$TMP/mock.out")" "produced 24 failed 0"
t0=$(date +%s.%N)
worker fast "$TMP/fast.txt" one fast "test.factory = fast\ntest.delay = 0.5"
wait_count "$TMP/fast.txt" 24 60
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check_eq "the fast consumer handled the 24" "$(count "$TMP/fast.txt")" 24
check_eq "... with max_concurrency (8) handlers busy at once, from one partition" "$(max_inflight "$TMP/fast.txt")" 8
echo "    24 x 0.5 s handled in ${t} s (one at a time: 12 s)"
stop "$PID_fast"
check_eq "exit 0" "$RC" 0
worker inorder "$TMP/inorder.txt" one inorder "test.delay = 0.05"
wait_count "$TMP/inorder.txt" 24 60
check_eq "for contrast, the in-order consumer handled the 24" "$(count "$TMP/inorder.txt")" 24
check_eq "... one at a time (one partition)" "$(max_inflight "$TMP/inorder.txt")" 1
stop "$PID_inorder"

# --- a failing handler: the server stops, the offsets are committed all the same ----------------
mock "topic fails 1"
mock "produce fails 40 0"
worker f1 "$TMP/fails.txt" fails fails "test.factory = fast\ntest.delay = 0.2\ntest.fail_at = 10"
for _ in $(seq 1 400); do kill -0 "$PID_f1" 2>/dev/null || break; sleep 0.05; done
wait "$PID_f1" 2>/dev/null; rc=$?
check_eq "a handler's error stops the fast consumer (exit 0, a graceful stop)" "$rc" 0
LOG1=$(cat "$TMP/f1.log")
check_contains "... logged as the reference does" "$LOG1" "Unhandled error in pump or handler thread, terminating."
check_contains "... naming the message and saying it is committed all the same" "$LOG1" \
  "handling fails [0] offset 10 failed; committed all the same (the fast consumer): "
check_contains "... and why" "$LOG1" "a failing handler at 10"
check_eq "10 was not recorded as handled" "$(grep -c '^n=10 ' "$TMP/fails.txt")" 0
first=$(count "$TMP/fails.txt")
# The messages consumed but not handled when it stopped: logged, committed.
SKIPPED=$(grep -o 'the fast consumer): fails \[0\] offsets [0-9,-]*' "$TMP/f1.log" | sed 's/.*offsets //' | tr ',' '\n' |
  awk -F- '{ a = $1; b = ($2 == "" ? $1 : $2); for (i = a; i <= b; i++) print i }' | sort -n | tr '\n' ' ' | sed 's/ $//')
echo "    first run: $first handled; consumed, not handled, committed: ${SKIPPED:-none}"
worker f2 "$TMP/fails.txt" fails fails "test.factory = fast\ntest.delay = 0.01"
for _ in $(seq 1 400); do
  [ "$(( $(count "$TMP/fails.txt") + 1 + $(echo "$SKIPPED" | wc -w) ))" -ge 40 ] && break; sleep 0.05
done
sleep 2
stop "$PID_f2"
check_eq "after a restart: exit 0" "$RC" 0
check_eq "the failing message was not handled again" "$(grep -c '^n=10 ' "$TMP/fails.txt")" 0
check_eq "no message handled twice" "$(grep -o '^n=[0-9]*' "$TMP/fails.txt" | sort | uniq -d | wc -l)" 0
NEVER=$(seq 0 39 | while read -r n; do grep -q "^n=$n " "$TMP/fails.txt" || echo "$n"; done | tr '\n' ' ' | sed 's/ $//')
want=$(printf '%s\n' 10 $SKIPPED | sort -n | tr '\n' ' ' | sed 's/ $//')
check_eq "never handled: exactly the failing message and the ones logged as consumed but not handled" "$NEVER" "$want"
finish
