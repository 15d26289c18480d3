#!/usr/bin/env bash
# Broker faults under load, against librdkafka's mock cluster
# (tests/kafka-mock.c, three brokers): while the in-order Kafka consumer is
# busy, the partitions' leaders move to other brokers, fetches and commits
# fail with transient errors or are answered late, and a broker goes down
# and comes back. The consumer must lose nothing, handle a message twice
# only when its commit failed (it says so in its log), keep each
# partition's order, never hang, and log the faults. Then the producer
# client produces while leaders move: every produce gets its delivery
# report, an acknowledgement or a clear error, and what was acknowledged is
# in the topic.
. "$(dirname "$0")/lib.sh"
cp "$APPS/kafkaapp.lua" "$TMP/"
. "$(dirname "$0")/kafka-lib.sh"
start_kafka_mock 3
pass "the mock cluster listens ($BOOT)"

OUT=$TMP/out.txt
: > "$OUT"
worker() { # worker NAME [APP_LINE [ARGS]]: an in-order consumer of topic "faults" (log in $TMP/NAME.log, pid in PID_NAME)
  local name=$1
  printf '[app:main]\nfactory = kafkaapp:make_consumer\ntest.out = %s\ntest.delay = 0.004\nkafka.bootstrap_servers = %s\nkafka.group_id = test.faults\nkafka.topics = faults\nkafka.consume_batch_size = 16\nkafka.librdkafka.heartbeat.interval.ms = 200\nkafka.librdkafka.session.timeout.ms = 10000\n[server:main]\nfactory = baseplate.server.queue_consumer\nmax_concurrency = 4\nstop_timeout = 10 seconds\n' \
    "$OUT" "$BOOT" > "$TMP/$name.ini"
  [ -n "${2:-}" ] && sed -i "s/^kafka.topics = faults/&\n$2/" "$TMP/$name.ini"
  (cd "$TMP" && exec "$BIN/baseplate-serve" ${3:-} --bind "127.0.0.1:$(random_port)" "$name.ini") > "$TMP/$name.log" 2>&1 &
  eval "PID_$name=$!"
  PIDS="${PIDS:-} $!"
}
distinct() { grep -o '^n=[0-9]*' "$OUT" | sort -u | wc -l; }
dups() { grep -o '^n=[0-9]*' "$OUT" | sort | uniq -d | tr '\n' ' ' | sed 's/ $//'; }
wait_distinct() { # N SECONDS
  local i
  for i in $(seq 1 $(( ${2:-20} * 20 ))); do [ "$(distinct)" -ge "$1" ] && return 0; sleep 0.05; done
  return 1
}
stop() { # stop PID: SIGTERM, wait up to 15 s; sets RC
  kill -TERM "$1"
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$1" 2>/dev/null; then kill -KILL "$1"; RC=timeout; else wait "$1"; RC=$?; fi
}

# Partitions 0-3 led by brokers 1, 2, 3, 3; the group's coordinator is broker 1.
mock "topic faults 4"
mock "leader faults 0 1"; mock "leader faults 1 2"; mock "leader faults 2 3"; mock "leader faults 3 3"
mock "coordinator test.faults 1"
mock "produce faults 2000 0"
check_eq "2000 messages produced" "$(tail -1 "$TMP/mock.out")" "produced 2000 failed 0"

# (with librdkafka's group debugging, to see the commits fail and be retried)
worker a "kafka.librdkafka.debug = cgrp" --debug
wait_distinct 200 30
check_eq "the consumer is under way" "$([ "$(distinct)" -ge 200 ] && echo yes)" yes

# (a) leaders move: partition 0 to broker 2, 1 to 3, 2 to 1.
mock "leader faults 0 2"; mock "leader faults 1 3"; mock "leader faults 2 1"
at=$(distinct)
wait_distinct $((at + 150)) 30
check_eq "(a) consumption goes on after the leaders moved ($at then $(distinct))" \
  "$([ "$(distinct)" -ge $((at + 150)) ] && echo yes)" yes

# (b) transient errors: fetches refused as sent to a non-leader, timed out
# or to a partition still loading; commits refused (coordinator moving,
# timed out) and late ones.
mock "error 1 6 3"       # Fetch: NOT_LEADER_OR_FOLLOWER
mock "error 1 7 3"       # Fetch: REQUEST_TIMED_OUT
mock "error 8 15 2"      # OffsetCommit: COORDINATOR_NOT_AVAILABLE
mock "error 8 16 2"      # OffsetCommit: NOT_COORDINATOR
mock "error 8 7 2"       # OffsetCommit: REQUEST_TIMED_OUT
mock "slow 1 8 0 800 5"  # OffsetCommit to broker 1 (the coordinator): 0.8 s late
at=$(distinct)
wait_distinct $((at + 150)) 30
check_eq "(b) consumption goes on through fetch and commit errors ($at then $(distinct))" \
  "$([ "$(distinct)" -ge $((at + 150)) ] && echo yes)" yes

# (c) broker 3 (leading partition 1 and 3) goes down for 3 s, and back.
mock "down 3"
at=$(distinct)
sleep 3
during=$(( $(distinct) - at ))
mock "up 3"
if [ "$during" -gt 0 ]; then pass "(c) the partitions on the other brokers go on while broker 3 is down ($during handled)"
else fail "(c) the partitions on the other brokers go on while broker 3 is down" "$during handled"; fi
wait_distinct 2000 60
check_eq "everything handled after the faults: nothing lost, no hang" "$(distinct)" 2000
sleep 1
LOG=$(cat "$TMP/a.log")
check_contains "(b) the fetch errors are logged (ERROR, baseplate.kafka)" \
  "$(grep '"level": "ERROR"' "$TMP/a.log" | grep baseplate.kafka)" "Fetch from broker"
check_contains "(b) the commits met the errors and librdkafka retried them (DEBUG)" "$LOG" "OffsetCommitRequest failed"
echo "    commits that failed for good (WARNING): $(grep -c 'committing faults' "$TMP/a.log")"
check_contains "(c) the broker's loss is logged (baseplate.kafka)" \
  "$(grep baseplate.kafka "$TMP/a.log" | grep -E '"level": "(WARNING|ERROR)"')" "Connection refused"
# Each message handled twice must be one whose commit failed (logged as a
# WARNING with its offset + 1): after a failed commit the consumer reads on
# from its position, so in one process nothing is handled twice at all.
D=$(dups)
check_eq "no message handled twice by the consumer that saw the faults" "$D" ""
check_eq "each partition's messages were handled in offset order" \
  "$(awk '{ split($3, o, "="); k = $2 " " $4; if (k in last && o[2] + 0 < last[k]) print k; last[k] = o[2] + 0 }' "$OUT")" ""
grep -E '"level": "(WARNING|ERROR)"' "$TMP/a.log" | sed 's/"process": [0-9]*//' | sort | uniq -c | sort -rn | head -12
if grep -qE 'Traceback|Unhandled error' "$TMP/a.log"; then fail "no unhandled error" "$(grep -E -A3 'Traceback|Unhandled error' "$TMP/a.log")"
else pass "no unhandled error in the consumer"; fi
t0=$(date +%s)
stop "$PID_a"
check_eq "SIGTERM after the faults: exit 0" "$RC" 0
t=$(( $(date +%s) - t0 ))
if [ "$t" -le 12 ]; then pass "... within stop_timeout ($t s)"; else fail "within stop_timeout" "$t s"; fi

# A restart reads on from the committed offsets: what is handled again is
# only what the log said it could not commit (the last commit of a
# partition that failed with nothing after it to cover it).
mock "produce faults 100 2000"
lines_before=$(grep -c '^n=' "$OUT")
worker b
wait_distinct 2100 30
sleep 1
check_eq "a new consumer handles the 100 new messages" "$(distinct)" 2100
AGAIN=$(tail -n +"$((lines_before + 1))" "$OUT" | grep -o '^n=[0-9]*' | sed 's/n=//' | awk '$1 < 2000' | sort -n | tr '\n' ' ' | sed 's/ $//')
unexplained=""
for n in $AGAIN; do
  line=$(grep "^n=$n " "$OUT" | head -1)
  p=$(echo "$line" | sed 's/.* p=\([0-9]*\) .*/\1/'); o=$(echo "$line" | sed 's/.* o=\([0-9]*\) .*/\1/')
  grep -qE "committing faults \[$p\] offset $((o + 1))\b" "$TMP/a.log" || unexplained="$unexplained n=$n"
done
check_eq "handled again after the restart only where a commit failed (again: ${AGAIN:-none})" "$unexplained" ""
stop "$PID_b"
check_eq "exit 0" "$RC" 0

# --- the producer: delivery reports while leaders move -------------------------------------------
mock "topic produced 4"
mock "leader produced 0 1"; mock "leader produced 1 2"; mock "leader produced 2 3"; mock "leader produced 3 1"
KAFKA_BOOT=$BOOT KAFKA_TOPIC=produced KAFKA_COUNT=600 KAFKA_PARTITIONS=4 KAFKA_PACE=0.005 KAFKA_OUT=$TMP/produced.txt \
  timeout 60 "$BIN/bp-lua-test" "$SOURCE_DIR/tests/integration/tools/kafka_produce_faults.lua" > "$TMP/producer.log" 2>&1 &
PRODUCER=$!
for _ in $(seq 1 200); do [ -f "$TMP/produced.txt" ] && [ "$(wc -l < "$TMP/produced.txt")" -ge 100 ] && break; sleep 0.02; done
mock "leader produced 0 2"; mock "leader produced 1 3"
sleep 0.5
mock "leader produced 2 1"; mock "leader produced 3 2"
mock "error 0 6 3"  # Produce: NOT_LEADER_OR_FOLLOWER (retried)
sleep 0.5
mock "error 0 10 1" # Produce: MESSAGE_TOO_LARGE (not retried: those messages fail)
sleep 0.5
mock "leader produced 0 3"
wait "$PRODUCER"; rc=$?
cat "$TMP/producer.log"
check_eq "the producer's checks pass" "$rc" 0
check_eq "an outcome for each of the 600 produces" "$(grep -c '^n=' "$TMP/produced.txt")" 600
acked=$(grep -c ' ok$' "$TMP/produced.txt")
echo "    $acked acknowledged; failures: $(grep -v ' ok$' "$TMP/produced.txt" | cut -d' ' -f2- | sort | uniq -c | head -5)"
check_contains "the produces whose request the broker refused failed with its reason" \
  "$(grep -v ' ok$' "$TMP/produced.txt" | head -1)" "ConnectionError: events: producing to produced: Broker: Message size too large"
# Everything acknowledged is in the topic: read it back.
: > "$OUT"
sed -e 's/^kafka.group_id = .*/kafka.group_id = test.readback/' -e 's/^kafka.topics = .*/kafka.topics = produced/' \
  -e 's/^test.delay = .*/test.delay = 0/' "$TMP/b.ini" > "$TMP/r.ini"
(cd "$TMP" && exec "$BIN/baseplate-serve" --bind "127.0.0.1:$(random_port)" r.ini) > "$TMP/r.log" 2>&1 &
PID_r=$!; PIDS="$PIDS $PID_r"
wait_distinct "$acked" 30
sleep 0.5
missing=$(grep ' ok$' "$TMP/produced.txt" | cut -d' ' -f1 | sort > "$TMP/acked.txt"; grep -o '^n=[0-9]*' "$OUT" | sort -u > "$TMP/read.txt"; comm -23 "$TMP/acked.txt" "$TMP/read.txt" | wc -l)
check_eq "every acknowledged message is in the topic" "$missing" 0
stop "$PID_r"
finish
