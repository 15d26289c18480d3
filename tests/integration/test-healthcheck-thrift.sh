# baseplate-healthcheck thrift against a python3-thrift THeader service
# (tools/thrift_health_server.py): healthy, unhealthy, each probe sent as
# asked, a zlib-transformed reply with info headers, a declared Error, a
# TApplicationException, no result, no answer within --timeout, an answer
# that is not Thrift, a closed connection, nothing listening.
. "$(dirname "$0")/lib.sh"

hc() { timeout 20 "$BIN/baseplate-healthcheck" "$@" 2>&1; echo "rc=$?"; }

# serve MODE: start the service; sets PORT, SERVER_PID, CALLS (its log).
serve() {
  rm -f "$TMP/port"
  CALLS=$TMP/calls-$1
  /usr/bin/python3 "$SOURCE_DIR/tests/integration/tools/thrift_health_server.py" "$1" "$TMP/port" \
    > "$CALLS" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do [ -f "$TMP/port" ] && break; sleep 0.05; done
  PORT=$(cat "$TMP/port" 2>/dev/null)
  [ -n "$PORT" ] || { fail "the $1 service starts" "$(cat "$CALLS")"; finish; }
}
unserve() { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=; }

serve healthy
check_eq "healthy" "$(hc thrift "127.0.0.1:$PORT")" "OK!
rc=0"
check_eq "the call: is_healthy, THeader, readiness by default" "$(tail -1 "$CALLS")" \
  "call is_healthy seqid=0 probe=1 client_type=0"
i=1
for probe in readiness liveness startup; do
  check_eq "--probe $probe" "$(hc thrift "127.0.0.1:$PORT" --probe "$probe")" "OK!
rc=0"
  check_eq "--probe $probe is sent as $i" "$(tail -1 "$CALLS")" \
    "call is_healthy seqid=0 probe=$i client_type=0"
  i=$((i + 1))
done
check_eq "localhost by name" "$(hc thrift "localhost:$PORT")" "OK!
rc=0"
unserve

serve unhealthy
check_eq "unhealthy" "$(hc thrift "127.0.0.1:$PORT" --probe liveness)" \
  "NOT OK: service indicated unhealthiness in probe 2
rc=1"
unserve

serve zlib
check_eq "a zlib reply with info headers" "$(hc thrift "127.0.0.1:$PORT")" "OK!
rc=0"
unserve

serve error
check_eq "a declared Error" "$(hc thrift "127.0.0.1:$PORT")" \
  "NOT OK: is_healthy raised Error(code=503, message='database down')
rc=1"
unserve

serve app-exception
check_eq "a TApplicationException" "$(hc thrift "127.0.0.1:$PORT")" \
  "NOT OK: TApplicationException (Internal error): boom
rc=1"
unserve

serve no-result
check_eq "no result" "$(hc thrift "127.0.0.1:$PORT")" "NOT OK: is_healthy failed: unknown result
rc=1"
unserve

serve silent
start=$(date +%s%N)
check_eq "no answer within --timeout" "$(hc thrift "127.0.0.1:$PORT" --timeout 1)" \
  "NOT OK: timed out after 1 seconds waiting for is_healthy (probe 1) from 127.0.0.1:$PORT
rc=1"
elapsed=$((($(date +%s%N) - start) / 1000000))
if [ "$elapsed" -lt 3000 ]; then pass "the timeout is kept (${elapsed} ms)"; else
  fail "the timeout is kept" "took ${elapsed} ms"; fi
unserve

serve garbage
out=$(hc thrift "127.0.0.1:$PORT")
check_contains "an answer that is not Thrift" "$out" "NOT OK: invalid Thrift reply from 127.0.0.1:$PORT: "
check_contains "an answer that is not Thrift: exit 1" "$out" "rc=1"
unserve

serve close
check_eq "closed without answering" "$(hc thrift "127.0.0.1:$PORT")" \
  "NOT OK: 127.0.0.1:$PORT closed the connection without answering
rc=1"
unserve

check_eq "nothing listening" "$(hc thrift "127.0.0.1:$PORT")" \
  "NOT OK: cannot connect to 127.0.0.1:$PORT: connection refused
rc=1"

# --- our own Thrift server (baseplate.server.thrift) ------------------------------------
cp "$APPS/thriftapp.lua" "$TMP/"
cp -r "$APPS/thrift" "$TMP/"
printf '[app:main]\nfactory = thriftapp:make_processor\n[server:main]\nfactory = baseplate.server.thrift\ndrain_time = 2 seconds\nstop_timeout = 1 second\n' \
  > "$TMP/hcthrift.ini"
start_server "$TMP/hcthrift.ini" || { fail "the Thrift server starts"; finish; }
check_eq "baseplate.server.thrift: healthy" "$(hc thrift "127.0.0.1:$PORT")" "OK!
rc=0"
check_eq "baseplate.server.thrift: liveness" "$(hc thrift "127.0.0.1:$PORT" --probe liveness)" "OK!
rc=0"
kill -TERM "$SERVER_PID"
wait_for_log "shutting down gracefully" 5
check_eq "baseplate.server.thrift shutting down: readiness fails" "$(hc thrift "127.0.0.1:$PORT")" \
  "NOT OK: service indicated unhealthiness in probe 1
rc=1"
check_eq "baseplate.server.thrift shutting down: liveness passes" \
  "$(hc thrift "127.0.0.1:$PORT" --probe liveness)" "OK!
rc=0"
stop_server TERM
finish
