# The HTTP client (baseplate.clients.http) against a real server: our own
# baseplate-serve (tests/integration/apps/httpclientapp.lua) serves, and a
# baseplate-script runs the client side; a relay route shows the trace
# headers an internal client sends arriving at a server.
. "$(dirname "$0")/lib.sh"

cp "$APPS/httpclientapp.lua" "$TMP/"
printf '[app:main]\nfactory = httpclientapp:make_app\nbaseplate.trust_trace_headers = true\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/server.ini"
start_server "$TMP/server.ini" || { fail "server starts"; finish; }

cat > "$TMP/client.ini" <<INI
[app:main]
api.timeout = 10 seconds
web.filter.hostname_denylist = *.internal.example
web6.filter.allow_ipv6 = true
web6.filter.port_allowlist = $PORT, 80
hole.filter.ip_allowlist = 127.0.0.1/32
hole.filter.port_allowlist = $PORT
retry.max_retries = 2
retry.connect_timeout = 2 seconds
small.max_response_size = 1000
INI
out=$(cd "$TMP" && timeout 60 "$BIN/baseplate-script" client.ini httpclientapp:run "$PORT" 2>&1; echo "rc=$?")
echo "$out" | grep -v '^ok ' | head -40
oks=$(printf '%s\n' "$out" | grep -c '^ok ')
check_eq "no client check failed" "$(printf '%s\n' "$out" | grep '^FAILED' | head -5)" ""
check_contains "the client checks ran to the end" "$out" "done in"
check_contains "script exits 0" "$out" "rc=0"
[ "$oks" -ge 51 ] && pass "all 51 client checks passed ($oks)" || fail "all 51 client checks passed" "$oks"

# An internal client inside a served request: the trace arrives downstream.
url="http://127.0.0.1:$PORT/relay"
got=$(curl -s --max-time 10 -H 'X-Trace: 1234' -H 'X-Span: 5678' -H 'X-Parent: 1111' -H 'X-Sampled: 1' \
  -H 'X-Flags: 1' -H 'X-Edge-Request: ZWRnZQ==' "$url")
check_contains "relay: X-Trace carried" "$got" '"x-trace":"1234"'
check_contains "relay: X-Parent is the server span" "$got" '"x-parent":"5678"'
check_contains "relay: X-Sampled" "$got" '"x-sampled":"1"'
check_contains "relay: X-Flags" "$got" '"x-flags":"1"'
check_contains "relay: X-Edge-Request passed on" "$got" '"x-edge-request":"ZWRnZQ=="'
span=$(printf '%s' "$got" | sed -n 's/.*"x-span":"\([0-9]*\)".*/\1/p')
[ -n "$span" ] && [ "$span" != 5678 ] && [ "$span" != 1234 ] && pass "relay: a new X-Span" || fail "relay: a new X-Span" "$got"
got=$(curl -s --max-time 10 "$url")
check_contains "relay without upstream trace: X-Trace still sent" "$got" '"x-trace":"'
case "$got" in *x-sampled*) fail "relay: X-Sampled only when sampled" "$got" ;; *) pass "relay: X-Sampled only when sampled" ;; esac

# Calls still in flight when a script returns: it ends at once and cleanly.
t0=$(date +%s%3N)
out=$(cd "$TMP" && timeout 20 "$BIN/baseplate-script" client.ini httpclientapp:abandon "$PORT" 2>&1; echo "rc=$?")
t1=$(date +%s%3N)
check_contains "abandoned calls: they were in flight" "$out" "leaving 5 calls in flight"
check_contains "abandoned calls: the script exits 0" "$out" "rc=0"
[ $((t1 - t0)) -lt 3000 ] && pass "abandoned calls: the script does not wait for them" || fail "abandoned calls: the script does not wait for them" "$((t1 - t0)) ms"

stop_server TERM
check_eq "server stops cleanly" "$SERVER_RC" "0"
finish
