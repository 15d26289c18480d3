# The Thrift client (baseplate.clients.thrift) against real servers: our Lua
# Thrift server (apps/thriftapp.lua), a python3-thrift THeader server
# (tools/thrift_server.py) on TCP and on a UNIX socket, one more Python
# server killed in the middle of a call, and a Lua service A
# (apps/thriftproxy.lua) that calls the Lua server as B, for a trace
# crossing two hops. The checks themselves are
# tools/thrift_client_checks.lua, run by bp-lua-test.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! $PY -c 'import thrift.protocol.THeaderProtocol' 2>"$TMP/err"; then
  fail "python3-thrift is importable by $PY (scripts/install-deps)" "$(cat "$TMP/err")"
  finish
fi

EXTRA_PIDS=
cleanup() {
  for pid in ${SERVER_PID:-} $EXTRA_PIDS; do kill -KILL "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}

cp -r "$APPS/thriftapp.lua" "$APPS/thriftproxy.lua" "$APPS/thrift" "$TMP/"

# B: the Lua server, closing connections idle for half a second
sed 's/^\[server:main\]$/&\nidle_timeout = 500 milliseconds/' "$APPS/thriftapp.ini" > "$TMP/b.ini"
start_server "$TMP/b.ini" || { fail "the Lua Thrift server starts"; finish; }
LUA_PORT=$PORT
EXTRA_PIDS="$EXTRA_PIDS $SERVER_PID"
mv "$LOG" "$TMP/b.log"

# A: calls B
sed "s/DOWN_PORT/$LUA_PORT/" "$APPS/thriftproxy.ini" > "$TMP/a.ini"
start_server "$TMP/a.ini" || { fail "service A starts"; finish; }
PROXY_PORT=$PORT
PROXY_PID=$SERVER_PID
EXTRA_PIDS="$EXTRA_PIDS $SERVER_PID"
mv "$LOG" "$TMP/a.log"
SERVER_PID=

# start_py NAME WHERE: a Python server on a port or a UNIX socket; sets PY_PID
start_py() {
  $PY "$SOURCE_DIR/tests/integration/tools/thrift_server.py" "$APPS/thrift" "$2" >"$TMP/$1.log" 2>&1 &
  PY_PID=$!
  EXTRA_PIDS="$EXTRA_PIDS $PY_PID"
  for _ in $(seq 1 200); do
    grep -q '^listening' "$TMP/$1.log" && return 0
    kill -0 "$PY_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$TMP/$1.log"
  return 1
}
PY_PORT=$(random_port)
start_py py "$PY_PORT" || { fail "the Python server starts"; finish; }
PY_UNIX=$TMP/py.sock
start_py pyunix "$PY_UNIX" || { fail "the Python server starts on a UNIX socket"; finish; }
VICTIM_PORT=$(random_port)
while [ "$VICTIM_PORT" = "$PY_PORT" ]; do VICTIM_PORT=$(random_port); done
start_py victim "$VICTIM_PORT" || { fail "the second Python server starts"; finish; }
VICTIM_PID=$PY_PID
DEAD_PORT=$(random_port)

out=$(cd "$SOURCE_DIR/tests/lua" && LUA_PORT=$LUA_PORT PY_PORT=$PY_PORT PY_UNIX=$PY_UNIX \
  VICTIM_PORT=$VICTIM_PORT VICTIM_PID=$VICTIM_PID PROXY_PORT=$PROXY_PORT DEAD_PORT=$DEAD_PORT \
  timeout 100 "$BIN/bp-lua-test" "$SOURCE_DIR/tests/integration/tools/thrift_client_checks.lua" 2>&1)
echo "$out" | grep -v '^[0-9]* passed'
PASSED=$((PASSED + $(echo "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(echo "$out" | grep -c '^FAILED ')))
case "$out" in *" passed, "*) ;; *) fail "the checks ran to the end" "$out" ;; esac

check_eq "service A logged no error" "$(grep -c '"level": "ERROR"' "$TMP/a.log")" 0
# A stops cleanly with its pooled client connections open (under ASan: no leak)
SERVER_PID=$PROXY_PID
stop_server TERM
check_eq "service A stops cleanly, client connections and all" "$SERVER_RC" 0
finish
