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

# Configuration errors name the file, section and key.
cp -r "$APPS/thriftapp.lua" "$APPS/thrift" "$TMP/"
sed 's/^max_frame_size = 65536$/max_frame_size = 2147483647/' "$APPS/thriftapp.ini" > "$TMP/bad.ini"
check_eq "max_frame_size beyond THeader's limit" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1 | tail -1)" \
  "baseplate-serve: error: bad.ini: [server:main] max_frame_size: expected a whole number from 1024 to 1073741823, got \"2147483647\""
sed 's/^message_timeout = 2 seconds$/message_timeout = soon/' "$APPS/thriftapp.ini" > "$TMP/bad.ini"
check_contains "a bad message_timeout" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1 | tail -1)" \
  "bad.ini: [server:main] message_timeout: expected a timespan"
printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.thrift\n' > "$TMP/http-app.ini"
cp "$APPS/testapp.lua" "$TMP/"
check_contains "an HTTP app given to the Thrift server" "$(cd "$TMP" && "$BIN/baseplate-serve" http-app.ini 2>&1 | tail -1)" \
  "a processor made with baseplate.thrift.processor()"

start_server "$APPS/thriftapp.ini" || { fail "the Thrift server starts"; finish; }
check_contains "the server says where it listens" "$(cat "$LOG")" "Listening on ('127.0.0.1', $PORT)"

out=$($PY "$SOURCE_DIR/tests/integration/tools/thrift_client.py" "$PORT" "$APPS/thrift" 2>&1)
echo "$out" | grep -v '^[0-9]* passed'
PASSED=$((PASSED + $(echo "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(echo "$out" | grep -c '^FAILED ')))
case "$out" in *" passed, "*) ;; *) fail "the Python client ran to the end" "$out" ;; esac

rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
out=$($PY "$SOURCE_DIR/tests/integration/tools/thrift_hostile.py" "$PORT" 2 2>&1)
echo "$out" | grep -v '^[0-9]* passed'
PASSED=$((PASSED + $(echo "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(echo "$out" | grep -c '^FAILED ')))
case "$out" in *" passed, "*) ;; *) fail "the hostile client ran to the end" "$out" ;; esac
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
check "hostile input leaves memory alone (RSS grew by $((rss_after - rss_before)) KB)" \
  "$([ $((rss_after - rss_before)) -lt 20000 ] && echo yes)" yes
check_contains "a frame over max_frame_size is logged" "$(cat "$LOG")" "(max_frame_size is 65536 bytes)"

check_contains "a Lua error is logged with its traceback" "$(cat "$LOG")" "unhandled error in method fail: "
check_contains "... and the traceback" "$(cat "$LOG")" "stack traceback"

# A call in flight when SIGTERM comes is answered before the server exits.
cat > "$TMP/slow.py" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[2])
from testsvc import Test
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TSocket import TSocket
sock = TSocket("127.0.0.1", int(sys.argv[1]))
sock.setTimeout(5000)
prot = THeaderProtocol(sock, [THeaderClientType.HEADERS])
prot.trans.open()
client = Test.Client(prot)
client.sleep(1.0)
print("slept; then", client.add(1, 1) if len(sys.argv) > 3 else "done")
PYEOF
mkdir -p "$TMP/gen" && thrift -r --gen py -out "$TMP/gen" "$APPS/thrift/testsvc.thrift" 2>/dev/null
$PY "$TMP/slow.py" "$PORT" "$TMP/gen" > "$TMP/slow.out" 2>&1 &
slow=$!
sleep 0.4
stop_server TERM
wait $slow
check_eq "a call in flight at SIGTERM is answered" "$(cat "$TMP/slow.out")" "slept; then done"
check_eq "SIGTERM stops the server cleanly" "$SERVER_RC" 0

# --workers: each worker serves; SIGTERM stops them all.
start_server "$APPS/thriftapp.ini" --workers 2 || { fail "the Thrift server starts with two workers"; finish; }
for _ in 1 2 3; do wait_for_log "Listening on" 5; done
sleep 0.5
out=$($PY "$SOURCE_DIR/tests/integration/tools/thrift_client.py" "$PORT" "$APPS/thrift" header-binary framed-compact 2>&1)
check_contains "two workers serve calls" "$out" " 0 failed"
stop_server TERM
check_eq "SIGTERM stops the workers and the supervisor" "$SERVER_RC" 0

# --- methods written in C ----------------------------------------------------------
if cc -shared -fPIC -o "$TMP/thrift_c_method.so" "$APPS/thrift_c_method.c" -I"$SOURCE_DIR/include" \
     2>"$TMP/cc.err"; then
  cp -r "$APPS/thriftapp.lua" "$APPS/thrift" "$TMP/"
  sed "s|^baseplate.trust_trace_headers = true$|&\nc_method = $TMP/thrift_c_method.so|" \
    "$APPS/thriftapp.ini" > "$TMP/cmethod.ini"
  start_server "$TMP/cmethod.ini" || { fail "the Thrift server starts with C methods"; finish; }
  cat > "$TMP/cm.py" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[2])
from testsvc import Test
from thrift.Thrift import TApplicationException
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID
from thrift.transport.TSocket import TSocket
for sub in (THeaderSubprotocolID.BINARY, THeaderSubprotocolID.COMPACT):
    prot = THeaderProtocol(TSocket("127.0.0.1", int(sys.argv[1])), [THeaderClientType.HEADERS], sub)
    prot.trans.open()
    c = Test.Client(prot)
    try:
        print("add", c.add(2, 3))
    except TApplicationException as e:
        print("add raised", e.type, e.message)
    c.note("x")
    try:
        c.fail("x")
    except TApplicationException as e:
        print("fail raised", e.type, e.message)
    print("lua", c.get(1))
PYEOF
  out=$($PY "$TMP/cm.py" "$PORT" "$TMP/gen" 2>&1)
  check_eq "methods written in C answer, fail and finish oneway calls" "$out" "add 1005
fail raised 6 Internal error
lua one
add raised 9 add_c speaks binary only
fail raised 6 Internal error
lua one"
  check_contains "a failing C method is logged" "$(cat "$LOG")" "C method fail failed: "
  stop_server TERM
else
  fail "compiling the C methods" "$(cat "$TMP/cc.err")"
fi

# --- metrics: one server span per call, named after the method ---------------------
start_capture
cp -r "$APPS/thriftapp.lua" "$APPS/thrift" "$TMP/"
sed "s/^baseplate.trust_trace_headers = true$/&\nmetrics.tagging = true\nmetrics.endpoint = 127.0.0.1:$UDP_PORT/" \
  "$APPS/thriftapp.ini" > "$TMP/metrics.ini"
start_server "$TMP/metrics.ini" || { fail "the Thrift server starts with metrics"; finish; }
reset
$PY "$SOURCE_DIR/tests/integration/tools/thrift_client.py" "$PORT" "$TMP/thrift" framed-binary >/dev/null 2>&1
got=$(lines)
check_contains "a call's latency, by method" "$got" "baseplate.server.latency,endpoint=add:N|ms"
check_contains "a call that succeeded" "$got" "baseplate.server.rate,endpoint=add,success=True:"
count() { echo "$got" | awk -F'[:|]' -v k="$1" '$1 == k {n += $2} END {print n + 0}'; }
check_eq "a declared exception is a failure" "$(count baseplate.server.rate,endpoint=get,success=False)" 1
check_eq "so are errors (three calls of fail)" "$(count baseplate.server.rate,endpoint=fail,success=False)" 3
check_contains "oneway calls are measured too" "$got" "baseplate.server.latency,endpoint=note:N|ms"
check_contains "the built-in health check too" "$got" "baseplate.server.latency,endpoint=is_healthy:N|ms"
stop_server TERM
finish
