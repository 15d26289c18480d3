# The Thrift server (baseplate.server.thrift) serving a Lua service
# (apps/thriftapp.lua, apps/thrift/testsvc.thrift), called by a real
# python3-thrift client in every transport and protocol
# (tools/thrift_client.py), then hostile input.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! $PY -c 'import thrift.protocol.THeaderProtocol' 2>"$TMP/err"; then
  fail "python3-thrift is importable by $PY (scripts/install-deps)" "$(cat "$TMP/err")"
  finish
fi

start_server "$APPS/thriftapp.ini" || { fail "the Thrift server starts"; finish; }
check_contains "the server says where it listens" "$(cat "$LOG")" "Listening on ('127.0.0.1', $PORT)"

out=$($PY "$SOURCE_DIR/tests/integration/tools/thrift_client.py" "$PORT" "$APPS/thrift" 2>&1)
echo "$out" | grep -v '^[0-9]* passed'
PASSED=$((PASSED + $(echo "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(echo "$out" | grep -c '^FAILED ')))
case "$out" in *" passed, "*) ;; *) fail "the Python client ran to the end" "$out" ;; esac

check_contains "a Lua error is logged with its traceback" "$(cat "$LOG")" "unhandled error in method fail: "
check_contains "... and the traceback" "$(cat "$LOG")" "stack traceback"

stop_server TERM
check_eq "SIGTERM stops the server cleanly" "$SERVER_RC" 0
finish
