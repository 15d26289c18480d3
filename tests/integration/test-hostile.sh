# A hostile client against a real server: clients that vanish mid-response,
# requests whose framing is ambiguous or malformed, hostile sizes and
# slow senders. The server must answer each with a clear status (or close),
# and live on.
. "$(dirname "$0")/lib.sh"

H="python3 $SOURCE_DIR/tests/integration/tools/hostile.py"
start_server "$APPS/testapp.ini" || { fail "server starts"; finish; }
alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# --- 1. Clients that close their socket while a response is being written.
$H "$PORT" close-early /large/24 5
$H "$PORT" close-early /stream/3000/1024 5
sleep 0.3
if alive; then pass "a client closing mid-response does not kill the server"; else
  wait "$SERVER_PID"; fail "a client closing mid-response does not kill the server" "exit status $?"; finish; fi
check_eq "and it goes on serving" "$(curl -s "$(url /)")" '{"Hello":"World"}'
# --- Out of file descriptors: logged, connections wait in the backlog, and
# are served once descriptors are free again.
stop_server
start_server "$APPS/testapp.ini" || { fail "server starts"; finish; }
prlimit --nofile=48 --pid "$SERVER_PID"
$H "$PORT" hold 60 2 &
holder=$!
sleep 0.7
out=$(curl -s -m 6 -w ' %{http_code}' "$(url /)")
wait "$holder"
check_eq "a connection made while descriptors ran out is served once they are free" "$out" '{"Hello":"World"} 200'
check_contains "running out of descriptors is logged" "$(cat "$LOG")" "cannot accept connections: Too many open files"
check_contains "with the limit" "$(cat "$LOG")" "file descriptor limit 48"
check_eq "one log line for the whole episode" "$(grep -c 'cannot accept connections' "$LOG")" 1
check_eq "serving as before" "$(curl -s "$(url /)")" '{"Hello":"World"}'
stop_server

finish
