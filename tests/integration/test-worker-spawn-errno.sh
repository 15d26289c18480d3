# A worker that cannot be started: the supervisor logs the errno fork failed
# with (EAGAIN: the user's process limit), not a status it happens to share a
# number with. Needs root to run the server as another user under a limit of
# one process (root itself is exempt from RLIMIT_NPROC).
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null; then
  echo "skipped: needs root, setpriv and prlimit"
  finish
fi

LOG=$TMP/server.log
PORT=$(random_port)
# (LeakSanitizer needs a thread of its own at exit, which a limit of one
# process refuses: no leak check for this process in the sanitizer build)
# The limit counts every process of the user: a user no other process runs
# as (not nobody, which the test services may run as), so that the one
# process is the supervisor.
(cd "$APPS" && ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" exec prlimit --nproc=1:1 setpriv --reuid=64999 --regid=64999 --clear-groups \
  "$BIN/baseplate-serve" --bind "127.0.0.1:$PORT" --workers 2 testapp.ini) >"$LOG" 2>&1 &
SERVER_PID=$!
wait_for_log "Supervising 2 workers" || fail "the supervisor starts" "$(cat "$LOG")"
check_contains "a failed fork is logged with its errno's text" "$(cat "$LOG")" \
  "cannot start a worker: Resource temporarily unavailable"
if grep -q "cannot start a worker: interrupted\|cannot start a worker: operation in progress" "$LOG"; then
  fail "no BP_ code is taken for the errno" "$(cat "$LOG")"
else
  pass "no BP_ code is taken for the errno"
fi
wait_for_log "cannot start a worker" 5
sleep 1.5
tries=$(grep -c 'cannot start a worker' "$LOG")
if [ "$tries" -ge 3 ]; then pass "the failed start is tried again ($tries tries)"; else fail "the failed start is tried again" "$(cat "$LOG")"; fi
# With no worker to wait for, SIGTERM still ends the supervisor.
stop_server TERM
check_eq "SIGTERM ends a supervisor that has no worker" "$SERVER_RC" 0
finish
