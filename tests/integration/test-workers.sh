# --workers N: a supervisor and N pre-forked workers on one listening socket.
. "$(dirname "$0")/lib.sh"

start_server "$APPS/testapp.ini" --workers 2 || { fail "server starts"; finish; }
sleep 0.5
check_contains "supervisor logs" "$(cat "$LOG")" "Supervising 2 workers on ('127.0.0.1', $PORT), PID:$SERVER_PID"
workers=$(pgrep -P "$SERVER_PID" | sort)
check_eq "two worker processes" "$(printf '%s\n' "$workers" | grep -c .)" 2

# New connections are spread over both workers.
urls=$(for i in $(seq 1 60); do printf '%s ' "$(url /pid)"; done)
# shellcheck disable=SC2086
pids=$(curl -s -H 'Connection: close' $urls | sort -u)
check_eq "requests served by both workers" "$(printf '%s\n' "$pids" | grep -c .)" 2
check_eq "served by the workers, not the supervisor" "$(printf '%s\n' "$pids" | tr '\n' ' ')" "$(printf '%s\n' "$workers" | tr '\n' ' ')"

# Under load, both workers do a fair share of the work (CPU time; relative,
# so that other processes competing for the CPUs do not matter).
if command -v wrk >/dev/null; then
  declare -A before
  for w in $workers; do before[$w]=$(awk '{print $14 + $15}' "/proc/$w/stat"); done
  wrk -t2 -c32 -d2s "$(url /)" > "$TMP/wrk.out" 2>&1
  total=0 min=
  for w in $workers; do
    t=$(( $(awk '{print $14 + $15}' "/proc/$w/stat") - before[$w] ))
    total=$((total + t))
    if [ -z "$min" ] || [ "$t" -lt "$min" ]; then min=$t; fi
  done
  if [ "$total" -gt 0 ] && [ $((min * 5)) -ge "$total" ]; then
    pass "both workers share the load (least busy: $min of $total ticks)"
  else
    fail "both workers share the load" "least busy: $min of $total ticks"
  fi
fi

# A dead worker is replaced and service goes on.
victim=$(printf '%s\n' "$workers" | head -n 1)
kill -KILL "$victim"
sleep 0.8
check_contains "replacement logged, with the signal" "$(cat "$LOG")" "worker PID:$victim was killed by SIGKILL after"
check_contains "replaced at once the first time" "$(grep "PID:$victim was killed" "$LOG")" "; starting a new one\""
now=$(pgrep -P "$SERVER_PID" | sort)
check_eq "still two workers" "$(printf '%s\n' "$now" | grep -c .)" 2
if printf '%s\n' "$now" | grep -qx "$victim"; then fail "the dead worker is gone"; else pass "the dead worker is gone"; fi
check_eq "still serving" "$(curl -s "$(url /)")" '{"Hello":"World"}'

# Workers that served and then die, again and again, are always replaced
# (with a growing delay), never given up on: each kill here comes after the
# replacement is ready.
ready_workers() { pgrep -P "$SERVER_PID" | while read -r w; do
  grep -q "Listening on .*PID:$w" "$LOG" && echo "$w"; done; }
for round in 1 2 3 4; do
  for _ in $(seq 1 100); do [ "$(ready_workers | grep -c .)" = 2 ] && break; sleep 0.1; done
  victim=$(ready_workers | head -n 1)
  kill -KILL "$victim"
  wait_for_log "worker PID:$victim was killed by SIGKILL" 5
done
for _ in $(seq 1 100); do [ "$(ready_workers | grep -c .)" = 2 ] && break; sleep 0.1; done
if grep -q "giving up" "$LOG"; then fail "serving workers that die are not given up on"; else pass "serving workers that die are not given up on"; fi
check_contains "the delay grows" "$(cat "$LOG")" "; starting a new one in 1s"
check_eq "two workers again after four crashes" "$(ready_workers | grep -c .)" 2
now=$(pgrep -P "$SERVER_PID" | sort)
check_eq "still serving after four crashes" "$(curl -s "$(url /)")" '{"Hello":"World"}'

# SIGTERM to the supervisor stops everything gracefully.
curl -s -w ' %{http_code}' "$(url /sleep/700)" -o /dev/null > "$TMP/inflight.code" &
inflight=$!
wait_for_log "sleeping 700 ms"
stop_server TERM
wait "$inflight"
check_eq "in-flight request finished" "$(cat "$TMP/inflight.code")" " 200"
check_eq "supervisor exit status 0" "$SERVER_RC" 0
left=0
for w in $now; do kill -0 "$w" 2>/dev/null && left=$((left + 1)); done
check_eq "no worker left" "$left" 0

# Ctrl-C in a terminal: SIGINT reaches the supervisor and every worker (one
# process group). It drains like SIGTERM: the request in flight is answered.
setsid bash -c "cd '$APPS' && exec '$BIN/baseplate-serve' --workers 2 --bind 127.0.0.1:$PORT testapp.ini" > "$TMP/ctrlc.log" 2>&1 &
for _ in $(seq 1 100); do [ "$(grep -c 'Listening on' "$TMP/ctrlc.log")" = 2 ] && break; sleep 0.1; done
sup=$(pgrep -f "baseplate-serve --workers 2 --bind 127.0.0.1:$PORT" | head -n 1)
curl -s -w ' %{http_code}' "$(url /sleep/700)" -o /dev/null > "$TMP/inflight2.code" &
inflight=$!
for _ in $(seq 1 100); do grep -q "sleeping 700 ms" "$TMP/ctrlc.log" && break; sleep 0.05; done
kill -INT -- "-$sup"
wait "$inflight"
check_eq "Ctrl-C: the request in flight is answered" "$(cat "$TMP/inflight2.code")" " 200"
for _ in $(seq 1 100); do kill -0 "$sup" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$sup" 2>/dev/null; then fail "Ctrl-C: the supervisor exits"; kill -KILL -- "-$sup"; else pass "Ctrl-C: the supervisor exits"; fi
if grep -q "second SIGINT" "$TMP/ctrlc.log"; then fail "Ctrl-C: no worker takes it as a second Ctrl-C" "$(cat "$TMP/ctrlc.log")"; else pass "Ctrl-C: no worker takes it as a second Ctrl-C"; fi

# Workers that keep failing at start-up: the supervisor gives up (exit 1).
printf 'local M = {}\nfunction M.make_app(cfg)\n  error("database unreachable")\nend\nreturn M\n' > "$TMP/failing.lua"
printf '[app:main]\nfactory = failing:make_app\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/f.ini"
out=$(cd "$TMP" && timeout 20 "$BIN/baseplate-serve" --workers 2 --bind "127.0.0.1:$PORT" f.ini 2>&1; echo "rc=$?")
check_contains "each worker reports its error" "$out" "f.ini: [app:main] factory: failing:make_app failed: ./failing.lua:3: database unreachable"
check_contains "the supervisor gives up" "$out" "baseplate-serve: error: workers keep exiting at start-up (see their errors above)"
check_contains "exit status 1" "$out" "rc=1"
out=$(cd "$APPS" && "$BIN/baseplate-serve" --workers 2 --reload testapp.ini 2>&1)
check_eq "--reload with workers" "$out" "baseplate-serve: error: --reload cannot be combined with more than one worker (it is for development)"
out=$(cd "$TMP" && "$BIN/baseplate-serve" --workers two f.ini 2>&1)
check_eq "bad --workers" "$out" "baseplate-serve: error: --workers: expected a whole number from 1 to 1024, got \"two\""
finish
