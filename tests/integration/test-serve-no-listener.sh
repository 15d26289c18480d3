# baseplate-serve runs any server factory with any app, including a server
# that has no listening socket (tests/integration/apps/ticker.lua), alone
# and under --workers.
. "$(dirname "$0")/lib.sh"

printf '[app:main]\nfactory = ticker:make_app\nname = tock\n[server:main]\nfactory = ticker:make_server\ninterval = 0.05\n' > "$APPS/.ticker.ini"
trap 'rm -f "$APPS/.ticker.ini"; cleanup' EXIT
LOG=$TMP/server.log
(cd "$APPS" && exec "$BIN/baseplate-serve" .ticker.ini) > "$LOG" 2>&1 &
SERVER_PID=$!
wait_for_log "tock tick 3" 10 && pass "a server without a listener runs" || fail "a server without a listener runs" "$(cat "$LOG")"
check_contains "it says it has no listening socket" "$(cat "$LOG")" "Serving (no listening socket), PID:$SERVER_PID"
if grep -q "Listening on" "$LOG"; then fail "nothing is bound" "$(cat "$LOG")"; else pass "nothing is bound"; fi
stop_server TERM
check_eq "SIGTERM stops it, status 0" "$SERVER_RC" 0
check_contains "it stopped its work" "$(cat "$LOG")" "tock stopped after"

(cd "$APPS" && exec "$BIN/baseplate-serve" --workers 2 .ticker.ini) > "$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do [ "$(grep -c 'Serving (no listening socket)' "$LOG")" -ge 2 ] && break; sleep 0.1; done
check_contains "two workers without a listener" "$(cat "$LOG")" "Supervising 2 workers, PID:$SERVER_PID"
check_eq "both serve" "$(grep -c 'Serving (no listening socket)' "$LOG")" 2
sleep 0.3
stop_server TERM
check_eq "SIGTERM stops the supervisor and its workers, status 0" "$SERVER_RC" 0
check_eq "each worker stopped its work" "$(grep -c 'tock stopped after' "$LOG")" 2
finish
