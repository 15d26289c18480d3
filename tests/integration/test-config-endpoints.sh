# Baseplate.py's endpoint with an empty host, end to end: baseplate-serve
# --bind ":PORT" listens on every IPv4 interface (reached on 127.0.0.1 and
# on another local address), baseplate-healthcheck takes ":PORT", and the
# Thrift client reads ":PORT" from an INI file and reaches the server
# (tools/config_endpoint_checks.lua). Without the empty host each of these
# is refused at start-up.
. "$(dirname "$0")/lib.sh"

cp -r "$APPS/thriftapp.lua" "$APPS/thrift" "$APPS/testapp.lua" "$TMP/"
cp "$APPS/thriftapp.ini" "$TMP/thrift.ini"
printf '[app:main]\nfactory = testapp:make_app\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/http.ini"

# start_any CONFIG: baseplate-serve --bind ":PORT" on a free port; sets PORT, SERVER_PID, LOG
start_any() {
  LOG=$TMP/server.log
  for attempt in 1 2 3 4 5 6 7 8; do
    PORT=$(random_port)
    (cd "$TMP" && exec "$BIN/baseplate-serve" --bind ":$PORT" "$1") >"$LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
      if grep -q "Listening on" "$LOG" 2>/dev/null; then return 0; fi
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      sleep 0.05
    done
    wait "$SERVER_PID" 2>/dev/null
    grep -q "Address already in use" "$LOG" || { cat "$LOG"; return 1; }
  done
  return 1
}

# --- HTTP: every interface -----------------------------------------------------------------
start_any http.ini || { fail "baseplate-serve --bind :PORT starts"; finish; }
check_contains "it listens on every IPv4 interface" "$(grep 'Listening on' "$LOG")" "('0.0.0.0', $PORT)"
check_eq "reached on 127.0.0.1" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" 200
check_eq "reached on 127.0.0.2 (another interface address)" \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.2:$PORT/health")" 200
check_eq "baseplate-healthcheck wsgi :PORT" "$(timeout 20 "$BIN/baseplate-healthcheck" wsgi ":$PORT" 2>&1; echo "rc=$?")" "OK!
rc=0"
stop_server TERM
check_eq "the HTTP server stops cleanly" "$SERVER_RC" 0

# --- Thrift: the server on :PORT, the client from an INI file with :PORT -----------------------
start_any thrift.ini || { fail "the Thrift server starts on :PORT"; finish; }
check_eq "baseplate-healthcheck thrift :PORT" \
  "$(timeout 20 "$BIN/baseplate-healthcheck" thrift ":$PORT" 2>&1; echo "rc=$?")" "OK!
rc=0"
out=$(cd "$SOURCE_DIR/tests/lua" && LUA_PORT=$PORT \
  timeout 60 "$BIN/bp-lua-test" "$SOURCE_DIR/tests/integration/tools/config_endpoint_checks.lua" 2>&1)
echo "$out" | grep -v '^[0-9]* passed'
PASSED=$((PASSED + $(echo "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(echo "$out" | grep -c '^FAILED ')))
case "$out" in *" passed, "*) ;; *) fail "the checks ran to the end" "$out" ;; esac
stop_server TERM
check_eq "the Thrift server stops cleanly" "$SERVER_RC" 0

finish
