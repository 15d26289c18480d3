#!/usr/bin/env bash
# baseplate-event-publisher against a local event collector
# (tools/event_collector.py, no collector being packaged) that checks every
# POST as formats.md "Events" says: gzip, the X-Signature HMAC-SHA256 of the
# uncompressed body with the key (from the INI file or the secrets store),
# the v1/v2 batch framing, the headers; and answers 5xx or 4xx on demand.
# Events go in through a real POSIX queue (/events-NAME), written by
# baseplate-mq (a second process) and by baseplate.lib.events in a script.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
TOOLS=$SOURCE_DIR/tests/integration/tools
KEY_B64=$(printf 'hunter2-event-key' | base64)
Q=bptestev$$
PUB_PID=
COL_PID=

cleanup_more() {
  [ -n "$PUB_PID" ] && kill -KILL "$PUB_PID" 2>/dev/null
  [ -n "$COL_PID" ] && kill "$COL_PID" 2>/dev/null
  $PY -c "import ctypes; ctypes.CDLL('librt.so.1').mq_unlink(b'/events-$Q')" 2>/dev/null
  cleanup
}
trap cleanup_more EXIT

# start_collector VERSION [STATUS...]: sets CPORT, BATCHES
start_collector() {
  local v=$1
  shift
  BATCHES=$TMP/batches.$RANDOM
  rm -f "$TMP/col.port"
  : >"$BATCHES"
  $PY "$TOOLS/event_collector.py" "$TMP/col.port" "$BATCHES" TestKey "$KEY_B64" "$v" "$@" &
  COL_PID=$!
  for _ in $(seq 1 100); do [ -s "$TMP/col.port" ] && break; sleep 0.05; done
  CPORT=$(cat "$TMP/col.port")
}
stop_collector() { kill "$COL_PID" 2>/dev/null; wait "$COL_PID" 2>/dev/null; COL_PID=; }

# write_config VERSION [EXTRA KEY LINES...]
write_config() {
  local v=$1
  shift
  {
    echo "[event-publisher:$Q]"
    echo "collector.hostname = 127.0.0.1:$CPORT"
    echo "collector.scheme = http"
    echo "collector.version = $v"
    echo "key.name = TestKey"
    echo "retry_backoff = 0.1"
    echo "max_retry_backoff = 0.2"
    if [ $# -eq 0 ]; then echo "key.secret = $KEY_B64"; fi
    for l in "$@"; do echo "$l"; done
  } >"$TMP/pub.ini"
}

start_publisher() {
  PLOG=$TMP/pub.log.$RANDOM
  "$BIN/baseplate-event-publisher" --queue-name "$Q" "$TMP/pub.ini" >"$PLOG" 2>&1 &
  PUB_PID=$!
  for _ in $(seq 1 100); do grep -q 'publishing' "$PLOG" 2>/dev/null && return 0; sleep 0.05; done
}
stop_publisher() {
  kill -TERM "$PUB_PID" 2>/dev/null
  wait "$PUB_PID"
  PUB_RC=$?
  PUB_PID=
}

# wait_batches N: until N lines in $BATCHES
wait_batches() {
  for _ in $(seq 1 200); do [ "$(grep -c '' "$BATCHES")" -ge "$1" ] && return 0; sleep 0.05; done
  return 1
}

events() { "$BIN/baseplate-mq" --write "/events-$Q"; }

# --- v2: framing, gzip, signature; one batch for events within a second
start_collector 2
write_config 2
start_publisher
printf '{"n":1}\n{"n":2}\n{"n":3}\n' | events
wait_batches 1
check_eq "v2 batch: framed, gzip'd and signed as formats.md says" "$(cat "$BATCHES")" 'BATCH [{"n":1},{"n":2},{"n":3}]'

# --- 5xx: the batch is kept and tried again until the collector takes it
stop_publisher
stop_collector
start_collector 2 503 500 502
write_config 2
start_publisher
printf '{"n":4}\n{"n":5}\n' | events
wait_batches 4
check_eq "5xx answers: tried again with backoff, then taken once" "$(cat "$BATCHES")" \
  "$(printf 'REPLIED 503 2\nREPLIED 500 2\nREPLIED 502 2\nBATCH [{"n":4},{"n":5}]')"
check_contains "the failures are logged" "$(cat "$PLOG")" "could not send a batch of 2 events (attempt 1"

# --- 4xx: the collector refused the batch: dropped (logged), the next goes on
stop_publisher
stop_collector
start_collector 2 400
write_config 2
start_publisher
printf '{"n":6}\n' | events
wait_batches 1
sleep 1.2
printf '{"n":7}\n' | events
wait_batches 2
check_eq "4xx: that batch dropped, the next one sent" "$(cat "$BATCHES")" \
  "$(printf 'REPLIED 400 1\nBATCH [{"n":7}]')"
check_contains "the refusal is logged with the status" "$(cat "$PLOG")" "the collector refused a batch of 1 events (dropped): HTTP 400: collector says 400"

# --- stopped while the collector fails: the batch goes back to the queue,
# and the next run sends it (nothing lost)
stop_publisher
stop_collector
start_collector 2 503 503 503 503 503 503 503 503 503 503 503 503 503 503 503 503 503 503 503 503
write_config 2
start_publisher
printf '{"n":8}\n{"n":9}\n' | events
wait_batches 2
stop_publisher
check_eq "SIGTERM while failing: exits 0" "$PUB_RC" 0
check_contains "the unsent events are put back on the queue" "$(cat "$PLOG")" "2 unsent events put back on the queue"
stop_collector
start_collector 2
write_config 2
start_publisher
wait_batches 1
check_eq "the next run sends them" "$(cat "$BATCHES")" 'BATCH [{"n":8},{"n":9}]'

# --- v1 framing; the key from the secrets store; events from baseplate.lib.events
stop_publisher
stop_collector
start_collector 1
cat >"$TMP/secrets.json" <<JSON
{"secrets": {"secret/events/key": {"type": "versioned", "current": "$KEY_B64", "encoding": "base64"}}}
JSON
write_config 1 "key.secret_name = secret/events/key" "secrets.path = $TMP/secrets.json"
start_publisher
mkdir -p "$TMP/mod"
cat >"$TMP/mod/put_events.lua" <<'LUA'
local M = {}
function M.main(_, args)
    local events = require("baseplate.lib.events")
    local q = events.EventQueue(args[1], require("cjson").encode)
    for i = 1, 3 do q:put({ lib = i }) end
end
return M
LUA
printf '[app:main]\n' >"$TMP/app.ini"
(cd "$TMP/mod" && "$BIN/baseplate-script" "$TMP/app.ini" put_events:main "$Q") 2>"$TMP/script.err"
wait_batches 1
check_eq "v1 batch, key from the secrets store, events from EventQueue" "$(cat "$BATCHES")" \
  'BATCH [{"lib":1},{"lib":2},{"lib":3}]'
check_eq "the key never reaches the log" "$(grep -c "hunter2\|$KEY_B64" "$PLOG")" 0
stop_publisher

# --- configuration errors name the file, the section and the key
out=$(printf '[event-publisher:%s]\nkey.name = k\nkey.secret = %s\n' "$Q" "$KEY_B64" >"$TMP/bad.ini";
  "$BIN/baseplate-event-publisher" --queue-name "$Q" "$TMP/bad.ini" 2>&1)
check_contains "missing collector.hostname" "$out" "$TMP/bad.ini: [event-publisher:$Q] collector.hostname: no value specified"
out=$(printf '[event-publisher:%s]\ncollector.hostname = x\nkey.name = k\n' "$Q" >"$TMP/bad.ini";
  "$BIN/baseplate-event-publisher" --queue-name "$Q" "$TMP/bad.ini" 2>&1)
check_contains "no key" "$out" "key.secret or key.secret_name: give one of them"
out=$(printf '[event-publisher:%s]\ncollector.hostname = x\nkey.name = k\nkey.secret_name = nope\nsecrets.path = %s\n' \
  "$Q" "$TMP/secrets.json" >"$TMP/bad.ini"; "$BIN/baseplate-event-publisher" --queue-name "$Q" "$TMP/bad.ini" 2>&1)
check_contains "a missing secret" "$out" "key: secret not found: 'nope'"
out=$("$BIN/baseplate-event-publisher" --queue-name other "$TMP/bad.ini" 2>&1)
check_contains "no section" "$out" "no [event-publisher:other] section"

finish
