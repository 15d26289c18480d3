# Sourced by the Kafka tests after lib.sh: librdkafka's mock cluster
# (tests/kafka-mock.c) driven through a FIFO.
#   start_kafka_mock BROKERS   start it; sets MOCK_PID and BOOT (the bootstrap
#                              servers), fails the test if it does not start
#   mock COMMAND               send a command and wait for its answer
start_kafka_mock() {
  mkfifo "$TMP/mock.cmd"
  "$BUILD_DIR/tests/kafka-mock" "$1" "$TMP/boot" < "$TMP/mock.cmd" > "$TMP/mock.out" 2> "$TMP/mock.err" &
  MOCK_PID=$!
  exec 7> "$TMP/mock.cmd"
  trap 'exec 7>&-; kill "$MOCK_PID" 2>/dev/null; for p in ${PIDS:-}; do kill -KILL "$p" 2>/dev/null; done; cleanup' EXIT
  for _ in $(seq 1 100); do [ -s "$TMP/boot" ] && break; sleep 0.05; done
  BOOT=$(cat "$TMP/boot")
  [ -n "$BOOT" ] || { fail "the mock cluster starts" "$(cat "$TMP/mock.err")"; finish; }
}

ANSWERS=0 # answers read so far
mock() {
  echo "$1" >&7
  ANSWERS=$((ANSWERS + 1))
  for _ in $(seq 1 600); do
    [ "$(wc -l < "$TMP/mock.out")" -ge "$ANSWERS" ] && return 0
    sleep 0.05
  done
  return 1
}
