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

# --- an idle keep-alive connection does not hold the stop ---------------------------------
# keepalive_timeout is 75 s and stop_timeout 10 s here; idle connections go
# after a short linger.
start_server "$APPS/testapp.ini" || { fail "server restarts"; finish; }
exec 4<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET / HTTP/1.1\r\nHost: t\r\n\r\n' >&4
read -r -t 2 status <&4
check_eq "keep-alive request answered" "${status%$'\r'}" "HTTP/1.1 200 OK"
t0=$(date +%s%3N)
stop_server TERM
t1=$(date +%s%3N)
exec 4<&-
if [ $((t1 - t0)) -lt 2000 ]; then pass "idle connection closed at the stop ($((t1 - t0)) ms)"; else fail "idle connection closed at the stop" "$((t1 - t0)) ms"; fi

# --- connections waiting in the backlog at the stop are answered, not reset ------------------
# max_concurrency = 2 with both slots busy: a third connection waits in the
# kernel's backlog. Closing the listener would reset it; the stop accepts it.
printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.http\nmax_concurrency = 2\n' > "$TMP/busy.ini"
cp "$APPS/testapp.lua" "$TMP/"
start_server "$TMP/busy.ini" || { fail "server restarts"; finish; }
for i in 1 2; do curl -s -o /dev/null -w '%{http_code}' "$(url /sleep/800)" > "$TMP/busy$i" & done
wait_for_log "sleeping 800 ms"
sleep 0.2
curl -s -o "$TMP/third" -w '%{http_code}' --max-time 5 "$(url /)" > "$TMP/third.code" &
third=$!
sleep 0.3
stop_server TERM
wait "$third"
check_eq "the connection in the backlog is answered" "$(cat "$TMP/third.code") $(cat "$TMP/third")" '200 {"Hello":"World"}'
wait
check_eq "the busy requests complete" "$(cat "$TMP/busy1") $(cat "$TMP/busy2")" "200 200"
finish
