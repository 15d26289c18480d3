# Under Einhorn: serve on the inherited socket and send the manual ACK once
# ready; the master's SIGTERM shuts the worker down gracefully.
. "$(dirname "$0")/lib.sh"

out=$TMP/einhorn.out
(cd "$APPS" && exec "$BUILD_DIR/tests/fake-einhorn" "$out" "$BIN/baseplate-serve" testapp.ini) > "$TMP/server.log" 2>&1 &
master=$!
for _ in $(seq 1 100); do grep -q '^ack ' "$out" 2>/dev/null && break; sleep 0.05; done
PORT=$(awk '/^port/ {print $2}' "$out")
worker=$(pgrep -P "$master")
check_eq "manual ACK sent once ready" "$(grep '^ack ' "$out")" "ack {\"command\": \"worker:ack\", \"pid\": $worker}"
check_contains "listening on the inherited socket" "$(cat "$TMP/server.log")" "Listening on ('127.0.0.1', $PORT), PID:$worker"
check_eq "serves on the inherited socket" "$(curl -s "$(url /)")" '{"Hello":"World"}'
kill -TERM "$master"
wait "$master"
check_eq "graceful exit" "$(grep '^exit' "$out")" "exit 0"

# Not an Einhorn worker when the parent is not EINHORN_MASTER_PID: bind normally.
EINHORN_MASTER_PID=1 EINHORN_FD_COUNT=1 EINHORN_FD_0=99 start_server "$APPS/testapp.ini" || fail "ignores stale EINHORN_* variables"
check_eq "ignores stale EINHORN_* variables" "$(curl -s "$(url /)")" '{"Hello":"World"}'
stop_server INT
finish
