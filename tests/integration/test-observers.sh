# Spans and observers end to end: a running server, real requests (curl),
# and the StatsD datagrams it sends, captured from a real UDP socket.
. "$(dirname "$0")/lib.sh"

cp "$APPS/obsapp.lua" "$TMP/"

# serve_with "app lines" ["server lines"]: obsapp with these [app:main] keys
serve_with() {
  printf '[app:main]\nfactory = obsapp:make_app\n%b\n[server:main]\nfactory = baseplate.server.http\n%b\n' \
    "$1" "${2:-}" > "$TMP/obs.ini"
  start_server "$TMP/obs.ini" "${@:3}"
}

datagrams() { awk '/^--$/ { n += seen; seen = 0; next } !/^runtime\./ { seen = 1 } END { print n + 0 }' "$DGRAMS"; }

start_capture

# --- the tagged metrics observer -------------------------------------------------------
serve_with "metrics.tagging = true\nmetrics.allowlist = foo, color\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" \
  || { fail "server starts (tagged)"; finish; }
check_contains "unconfigured observers named" "$(cat "$LOG")" "The following observers are unconfigured and won't run: tracing, sentry"

curl -s "$(url /ok)" > /dev/null
check_eq "a successful request" "$(lines)" "baseplate.server.latency,endpoint=ok:N|ms
baseplate.server.rate,endpoint=ok,success=True:1|c"
check_eq "one datagram for it" "$(datagrams)" 1
reset

curl -s "$(url /fail)" > /dev/null
check_eq "a failing request" "$(lines)" "baseplate.server.latency,endpoint=fail:N|ms
baseplate.server.rate,endpoint=fail,success=False:1|c"
reset

curl -s "$(url /teapot)" > /dev/null
check_eq "an HTTP 4xx answer is not a failure" "$(lines)" "baseplate.server.latency,endpoint=teapot:N|ms
baseplate.server.rate,endpoint=teapot,success=True:1|c"
reset

check_eq "child spans run" "$(curl -s "$(url /child)")" '{"ok":true}'
# One batch per request: timers as they finish, then the counters.
check_eq "client and local child spans" "$(lines)" "baseplate.client.latency,client=redis,endpoint=get:N|ms
baseplate.local.latency,endpoint=geocode:N|ms
baseplate.client.latency,client=payments,endpoint=charge:N|ms
baseplate.server.latency,endpoint=child:N|ms
baseplate.client.rate,client=redis,endpoint=get,success=True:1|c
baseplate.local.rate,endpoint=geocode,success=True:1|c
baseplate.client.rate,client=payments,endpoint=charge,success=False:1|c
baseplate.server.rate,endpoint=child,success=True:1|c"
reset

curl -s "$(url /incr)" > /dev/null
check_eq "incr_tag" "$(lines)" "baseplate.server.latency,endpoint=incr:N|ms
baseplate.server.rate,endpoint=incr,success=True:1|c
things.done,endpoint=incr:3|c"
reset

curl -s "$(url /tags)" > /dev/null
check_eq "the allowlist passes foo, not baz" "$(lines)" "baseplate.server.latency,endpoint=tags,foo=bar:N|ms
baseplate.server.rate,endpoint=tags,foo=bar,success=True:1|c"
reset

curl -s "$(url /direct)" > /dev/null
check_eq "request.metrics (direct use)" "$(lines)" "direct.level,shard=2:7|g
baseplate.server.latency,endpoint=direct:N|ms
direct.hits:1|c
baseplate.server.rate,endpoint=direct,success=True:1|c"
reset

# Many requests in a row: their lines share datagrams, counters are summed
# across requests (never timers), and nothing is lost.
urls=()
for _ in $(seq 1 40); do urls+=("$(url /ok)"); done
curl -s "${urls[@]}" > /dev/null
check_eq "40 requests: 40 timer samples" "$(lines | grep -c '^baseplate.server.latency,endpoint=ok:N|ms$')" 40
check_eq "40 requests: the counter sums to 40" \
  "$(lines | awk -F'[:|]' '/^baseplate.server.rate,endpoint=ok,success=True:/ {n += $2} END {print n}')" 40
if [ "$(lines | grep -c '^baseplate.server.rate')" -lt 40 ]; then pass "counters summed across requests"; else fail "counters summed across requests"; fi
d=$(datagrams)
if [ "$d" -lt 40 ] && [ "$d" -ge 2 ]; then pass "lines packed into datagrams ($d datagrams for 40 requests)"; else fail "lines packed into datagrams" "$d datagrams"; fi
if awk 'BEGIN{m=0} /^--$/ {if (sz>m) m=sz; sz=0; next} {sz+=length($0)+1} END{exit !(m <= 1401)}' "$DGRAMS"; then
  pass "no datagram over 1,400 bytes"; else fail "no datagram over 1,400 bytes"; fi
reset

curl -s "$(url /big)" > /dev/null
sleep 0.1
check_contains "an oversized batch is refused" "$(cat "$LOG")" "is too large to send"
check_contains "the warning names the top counter" "$(grep 'too large' "$LOG")" "Top counters: loop.hot=9001"
check_eq "an oversized batch sends nothing" "$(lines)" ""
curl -s "$(url /ok)" > /dev/null
check_eq "the next request is reported again" "$(lines | head -1)" "baseplate.server.latency,endpoint=ok:N|ms"
reset

# Lua observers: one raises in on_server_span_created, a span observer raises
# in on_set_tag; the others still see every event.
curl -s "$(url /observed)" > /dev/null
check_eq "Lua observers see the span's events" "$(curl -s "$(url /events)")" \
  '{"events":"created observed;start;tag http.method=GET;tag peer.ipv4=127.0.0.1;tag color=blue;child inner.call;tag http.status_code=200;finish nil"}'
check_contains "a failing observer is logged" "$(cat "$LOG")" "observer on_server_span_created failed"
# One bus: Lua observers hear of C routes' spans, and of failures the core
# decides (a 5xx) or a Lua handler raised (the error itself, traceback and all).
curl -s "$(url /c/ok)" > /dev/null
check_eq "Lua observers see a C route's span" "$(curl -s "$(url '/events?name=c_ok')")" \
  '{"events":"created c_ok;start;tag http.method=GET;tag peer.ipv4=127.0.0.1;tag http.status_code=200;finish nil"}'
curl -s "$(url /c/unavailable)" > /dev/null
check_eq "a C route's 503 fails its span for Lua observers too" "$(curl -s "$(url '/events?name=c_unavailable')")" \
  '{"events":"created c_unavailable;start;tag http.method=GET;tag peer.ipv4=127.0.0.1;tag http.status_code=503;finish HTTPError"}'
curl -s "$(url /fail)" > /dev/null
check_eq "a Lua handler's error reaches on_finish as raised" "$(curl -s "$(url '/events?name=fail')")" \
  '{"events":"created fail;start;tag http.method=GET;tag peer.ipv4=127.0.0.1;tag http.status_code=500;finish boom (traceback)"}'
check_contains "C observers unaffected" "$(lines)" "baseplate.server.rate,endpoint=observed,color=blue,success=True:1|c"
stop_server TERM
check_eq "clean exit" "$SERVER_RC" 0

# The core's own tags (added only when something reads them) reach the
# allowlist: method and client address from the start, status at the end.
reset
serve_with "metrics.tagging = true\nmetrics.allowlist = http.method, http.status_code, peer.ipv4\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" \
  || { fail "server starts (core tags)"; finish; }
curl -s "$(url /ok)" > /dev/null
check_eq "http.method, peer.ipv4 and http.status_code allowed" "$(lines)" "baseplate.server.latency,endpoint=ok,http.method=GET,peer.ipv4=127.0.0.1,http.status_code=200:N|ms
baseplate.server.rate,endpoint=ok,http.method=GET,peer.ipv4=127.0.0.1,http.status_code=200,success=True:1|c"
reset
curl -s "$(url /teapot)" > /dev/null
check_contains "the status of each request" "$(lines)" "endpoint=teapot,http.method=GET,peer.ipv4=127.0.0.1,http.status_code=418,"
stop_server TERM

# --- the untagged observer --------------------------------------------------------------
start_capture
serve_with "metrics.namespace = myservice\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" || { fail "server starts (untagged)"; finish; }
curl -s "$(url /ok)" > /dev/null
check_eq "untagged: success" "$(lines)" "myservice.server.ok:N|ms
myservice.server.ok.success:1|c"
reset
curl -s "$(url /fail)" > /dev/null
check_eq "untagged: failure" "$(lines)" "myservice.server.fail:N|ms
myservice.server.fail.failure:1|c
myservice.errors.Error:1|c"
reset
curl -s "$(url /child)" > /dev/null
check_eq "untagged: child spans" "$(lines)" "myservice.clients.redis.get:N|ms
myservice.maps.geocode:N|ms
myservice.clients.payments.charge:N|ms
myservice.server.child:N|ms
myservice.clients.redis.get.success:1|c
myservice.clients.payments.charge.failure:1|c
myservice.server.child.success:1|c"
reset
curl -s "$(url /incr)" > /dev/null
check_eq "untagged: incr_tag" "$(lines)" "myservice.server.incr:N|ms
myservice.server.incr.success:1|c
myservice.things.done:3|c"
reset
curl -s "$(url /direct)" > /dev/null
check_contains "untagged: request.metrics is namespaced" "$(lines)" "myservice.direct.hits:1|c"
stop_server TERM

# --- sampling -------------------------------------------------------------------------
start_capture
serve_with "metrics.tagging = true\nmetrics_observer.sample_rate = 50%\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" \
  || { fail "server starts (sampled)"; finish; }
urls=()
for _ in $(seq 1 60); do urls+=("$(url /ok)"); done
curl -s "${urls[@]}" > /dev/null
sampled=$(lines | grep -c 'latency,endpoint=ok:N|ms|@0.5$')
check_eq "sampled lines carry the rate" "$(lines | grep -vc '|@0.5$')" 0
if [ "$sampled" -gt 5 ] && [ "$sampled" -lt 55 ]; then pass "about half the requests reported ($sampled of 60)"; else fail "about half the requests reported" "$sampled of 60"; fi
stop_server TERM

# --- configuration errors name the key ---------------------------------------------------
printf '[app:main]\nfactory = obsapp:make_app\nmetrics.tagging = true\nmetrics.namespace = x\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
check_contains "tagging with a namespace" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1)" \
  "metrics.namespace: cannot be combined with metrics.tagging"
printf '[app:main]\nfactory = obsapp:make_app\nmetrics.tagging = true\nmetrics.endpoint = nowhere\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
check_contains "an endpoint without a port" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1)" "metrics.endpoint:"
printf '[app:main]\nfactory = obsapp:make_app\nmetrics.namespace = x\nmetrics_observer.sample_rate = 150%%\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
check_contains "a sample rate over 100%" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1)" "metrics_observer.sample_rate:"

# --- trace headers and trace IDs in logs ----------------------------------------------
start_capture
serve_with "metrics.tagging = true\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" || { fail "server starts (untrusted)"; finish; }
out=$(curl -s -H 'X-Trace: 1234' -H 'X-Span: 5678' -H 'X-Parent: 999' "$(url /trace)")
check_contains "untrusted headers are ignored" "$out" '"parent_id":"none"'
case "$out" in *'"trace_id":"1234"'*) fail "untrusted trace ID ignored" "$out" ;; *) pass "untrusted trace ID ignored" ;; esac
tid=$(printf '%s' "$out" | sed -E 's/.*"trace_id":"([0-9]+)".*/\1/')
check_contains "a new trace is a root: span ID = trace ID" "$out" "\"id\":\"$tid\""
check_contains "the handler's log lines carry the trace ID" "$(grep 'in the handler' "$LOG")" "\"traceID\": \"$tid\""
check_contains "also after a wait" "$(grep 'after a wait' "$LOG")" "\"traceID\": \"$tid\""
check_contains "context values from configure_context" "$out" '"context":"hello 42"'
stop_server TERM

serve_with "baseplate.trust_trace_headers = true\nmetrics.tagging = true\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" "" --debug \
  || { fail "server starts (trusted)"; finish; }
out=$(curl -s -H 'X-Trace: 1234' -H 'X-Span: 5678' -H 'X-Parent: 999' -H 'X-Sampled: 1' -H 'X-Flags: 1' \
  -H 'X-Edge-Request: ZWRnZQ==' "$(url /trace)")
check_contains "trusted: the upstream trace ID" "$out" '"trace_id":"1234"'
check_contains "trusted: the span is the upstream's child span" "$out" '"id":"5678"'
check_contains "trusted: its parent is the upstream span" "$out" '"parent_id":"999"'
check_contains "trusted: sampled" "$out" '"sampled":true'
check_contains "trusted: flags" "$out" '"flags":1'
check_contains "trusted: X-Edge-Request carried along, base64-decoded" "$out" '"edge":"edge"'
check_contains "trusted: handler logs carry it" "$(grep 'in the handler' "$LOG" | tail -1)" '"traceID": "1234"'
check_contains "trusted: the access log line too" "$(grep 'GET /trace' "$LOG" | tail -1)" '"traceID": "1234"'
out=$(curl -s -w ' %{http_code}' -H 'X-Trace: 1234' -H 'X-Span: 5678' -H 'X-Flags: lots' "$(url /trace)")
check_contains "invalid headers: served" "$out" "} 200"
case "$out" in *'"trace_id":"1234"'*) fail "invalid headers: a new trace" "$out" ;; *) pass "invalid headers: a new trace" ;; esac
out=$(curl -s -H 'X-Trace: 1234' "$(url /trace)")
case "$out" in *'"trace_id":"1234"'*) fail "missing X-Span: a new trace" "$out" ;; *) pass "missing X-Span: a new trace" ;; esac
stop_server TERM

# --- runtime metrics -------------------------------------------------------------------
start_capture
serve_with "metrics.tagging = true\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" \
  "monitoring.interval = 200 milliseconds\nmonitoring.blocked_hub = 50 milliseconds" \
  || { fail "server starts (runtime metrics)"; finish; }
curl -s "$(url /block)" > /dev/null
# written by the monitoring coroutine once the loop runs again: maybe after the response
wait_for_log "event loop blocked for" 3
check_contains "a blocked loop is logged" "$(cat "$LOG")" "event loop blocked for"
for _ in $(seq 1 40); do all_lines | grep -qF "runtime.blocked_hub," && break; sleep 0.05; done
check_contains "and timed" "$(all_lines)" "runtime.blocked_hub,hostname=$(cat /proc/sys/kernel/hostname),PID=$SERVER_PID:N|ms"
reset
exec 4<>"/dev/tcp/127.0.0.1/$PORT"
sleep 0.7
host=$(cat /proc/sys/kernel/hostname)
pid=$SERVER_PID
check_contains "runtime.open_connections" "$(all_lines)" "runtime.open_connections,hostname=$host,PID=$pid:1|g"
check_contains "runtime.active_requests" "$(all_lines)" "runtime.active_requests,hostname=$host,PID=$pid:0|g"
check_contains "runtime.lua.memory_bytes" "$(all_lines)" "runtime.lua.memory_bytes,hostname=$host,PID=$pid:"
exec 4<&-
stop_server TERM

# --- a Baseplate set through the C API (as a C module does) ---------------------------------
start_capture
OBS_C_BASEPLATE=1 serve_with "metrics.tagging = true\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" \
  || { fail "server starts (C API baseplate)"; finish; }
check_eq "C-set Baseplate: /health answers" "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$(url /health)")" 200
check_eq "C-set Baseplate: a route answers" "$(curl -s --max-time 5 "$(url /ok)")" '{"ok":true}'
check_contains "C-set Baseplate: its spans are measured" "$(lines)" "baseplate.server.rate,endpoint=ok,success=True:1|c"
t0=$(date +%s%3N)
stop_server TERM
t1=$(date +%s%3N)
if [ $((t1 - t0)) -lt 3000 ]; then pass "C-set Baseplate: prompt shutdown"; else fail "C-set Baseplate: prompt shutdown" "$((t1 - t0)) ms"; fi

# --- the hello-world example ------------------------------------------------------------
start_capture
cp "$SOURCE_DIR/examples/helloworld/helloworld.lua" "$TMP/"
sed "s/^metrics.log_if_unconfigured = true/metrics.endpoint = 127.0.0.1:$UDP_PORT/" \
  "$SOURCE_DIR/examples/helloworld/helloworld.ini" > "$TMP/helloworld.ini"
start_server "$TMP/helloworld.ini" || { fail "helloworld starts"; finish; }
check_eq "helloworld answers" "$(curl -s "$(url /)")" '{"Hello":"World"}'
check_eq "helloworld sends its metrics" "$(lines)" "baseplate.server.latency,endpoint=hello_world:N|ms
baseplate.server.rate,endpoint=hello_world,success=True:1|c"
stop_server TERM
finish
