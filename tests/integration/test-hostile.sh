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
finish
