# SIGTERM under load: every request the server accepted completes with 200,
# none is cut, and the process exits 0 within stop_timeout.
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null || { fail "wrk is installed (scripts/install-deps)"; finish; }

start_server "$APPS/testapp.ini" || { fail "server starts"; finish; }
# Requests that take 20 ms each, so that many are in flight at the stop.
wrk -t2 -c40 -d4s "$(url /sleep/20)" > "$TMP/wrk.out" 2>&1 &
load=$!
sleep 1.5
t0=$(date +%s%3N)
stop_server TERM
t1=$(date +%s%3N)
wait "$load"
cat "$TMP/wrk.out"
check_eq "exit status 0" "$SERVER_RC" 0
if [ $((t1 - t0)) -lt 10000 ]; then pass "exited within stop_timeout ($((t1 - t0)) ms)"; else fail "exited within stop_timeout" "$((t1 - t0)) ms"; fi
served=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
if [ "${served:-0}" -gt 100 ]; then pass "served under load before the stop ($served requests)"; else fail "served under load" "$served"; fi
if grep -q "Non-2xx" "$TMP/wrk.out"; then fail "no non-2xx responses" "$(grep Non-2xx "$TMP/wrk.out")"; else pass "no non-2xx responses"; fi

# A request the server accepted and then cut shows in wrk as a read error
# (EOF or reset before the answer) or a timeout. wrk's write and connect
# errors are its reconnect attempts after the listener closed: refused, never
# accepted, expected.
cut=$(grep 'Socket errors' "$TMP/wrk.out" | grep -o 'read [0-9][0-9]*')
timeouts=$(grep 'Socket errors' "$TMP/wrk.out" | grep -o 'timeout [0-9][0-9]*')
check_eq "no accepted request cut" "${cut:-read 0}" "read 0"
check_eq "no request left unanswered" "${timeouts:-timeout 0}" "timeout 0"
finish
