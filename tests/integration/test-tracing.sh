# The tracing observer end to end: running servers, real requests (curl),
# and the Zipkin v1 JSON spans they POST to a collector stand-in
# (tools/zipkin_sink.py, which checks every span against the schema) or put
# on the POSIX queue.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
TOOLS=$SOURCE_DIR/tests/integration/tools
cp "$APPS/traceapp.lua" "$TMP/"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; cleanup' EXIT

# sink [STATUS]: a fresh collector stand-in; sets SINK_PORT and SPANS.
sink() {
  SPANS=$TMP/spans.$RANDOM
  : > "$SPANS"
  rm -f "$TMP/sink.port"
  $PY "$TOOLS/zipkin_sink.py" "$TMP/sink.port" "$SPANS" "${1:-202}" &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
  SINK_PORT=$(cat "$TMP/sink.port")
}
q() { $PY "$TOOLS/spans.py" "$SPANS" "$@"; }
# wait_spans N: until the sink has N spans (5 s at most)
wait_spans() {
  for _ in $(seq 1 100); do [ "$(q count)" -ge "$1" ] && break; sleep 0.05; done
}

# serve NAME "app lines": a server of traceapp as NAME; sets NAME_PORT, NAME_LOG
serve() {
  local name=$1
  printf '[app:main]\nfactory = traceapp:make_app\n%b\n[server:main]\nfactory = baseplate.server.http\n' \
    "$2" > "$TMP/$name.ini"
  start_server "$TMP/$name.ini" || return 1
  mv "$LOG" "$TMP/$name.log"
  eval "${name}_PORT=$PORT ${name}_LOG=$TMP/$name.log ${name}_PID=$SERVER_PID"
  PIDS+=("$SERVER_PID")
  SERVER_PID=
}
# stop NAME: SIGINT, and the server exits cleanly (no sanitizer report either)
stop() {
  local pid="${1}_PID" log="${1}_LOG" rc
  kill -INT "${!pid}"
  wait "${!pid}" 2>/dev/null
  rc=$?
  if [ "$rc" = 0 ] && ! grep -qE 'Sanitizer|runtime error' "${!log}"; then pass "$1 stops cleanly"
  else fail "$1 stops cleanly" "exit $rc" "$(grep -E -A5 'Sanitizer|runtime error' "${!log}" | head -20)"; fi
}

sink
serve A "tracing.service_name = front\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 100%\ntracing.span_batch_interval = 50 milliseconds" \
  || { fail "server starts"; finish; }
check_eq "tracing is no longer listed as unconfigured" "$(grep -c 'unconfigured.*tracing' "$A_LOG")" 0

# --- spans of every kind, field by field ------------------------------------------------
curl -s "http://127.0.0.1:$A_PORT/ok" > /dev/null
wait_spans 1
check_eq "a server span" "$(q brief)" "server ok http.method=GET,http.status_code=200,peer.ipv4=127.0.0.1"
check_eq "it passes the schema" "$(q invalid)" ""
check_eq "a root has parentId 0" "$(q field ok parentId)" "0"
check_eq "a root's id is its trace ID" "$(q field ok id)" "$(q field ok traceId)"
check_contains "endpoint: service name and IPv4" "$(q field ok annotations)" '"serviceName": "front"'

: > "$SPANS"
curl -s "http://127.0.0.1:$A_PORT/child" > /dev/null
wait_spans 4
check_eq "client, local and server spans, tags, counters, errors" "$(q brief)" \
"client payments.charge error=true
client redis.get key=k\"\\n\\x01
local geocode lc=maps
server child color=blue,count=7,counter.things.done=3,fresh=true,http.method=GET,http.status_code=200,peer.ipv4=127.0.0.1"
check_eq "they pass the schema" "$(q invalid)" ""
check_eq "children's parent is the server span" "$(q parent redis.get@front) $(q parent payments.charge@front)" "child@front child@front"
check_contains "a string with a quote, newline and control byte is escaped" "$(grep redis.get "$SPANS")" '"value": "k\"\n\u0001"'
check_eq "one trace" "$(q traces)" 1

: > "$SPANS"
curl -s "http://127.0.0.1:$A_PORT/fail" > /dev/null
wait_spans 1
check_eq "a failing request" "$(q brief)" "server fail error=true,http.method=GET,http.status_code=500,peer.ipv4=127.0.0.1"

# Many requests go in few batches (50 ms apart).
: > "$SPANS"
urls=(); for _ in $(seq 1 50); do urls+=("http://127.0.0.1:$A_PORT/ok"); done
curl -s "${urls[@]}" > /dev/null
wait_spans 50
check_eq "50 requests: 50 spans" "$(q count)" 50
b=$(q batches)
if [ "$b" -lt 50 ]; then pass "spans are sent in batches ($b POSTs for 50)"; else fail "spans are sent in batches" "$b"; fi
check_eq "all valid" "$(q invalid)" ""

# --- a trace across two services ----------------------------------------------------------
serve B "tracing.service_name = back\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 0%\ntracing.span_batch_interval = 50 milliseconds\nbaseplate.trust_trace_headers = true" \
  || { fail "server B starts"; finish; }
stop A
DOWNSTREAM="http://127.0.0.1:$B_PORT" serve A "tracing.service_name = front\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 100%\ntracing.span_batch_interval = 50 milliseconds" || fail "A restarts"
: > "$SPANS"
out=$(curl -s "http://127.0.0.1:$A_PORT/call")
wait_spans 3
check_contains "B saw the sampled trace (despite its 0% rate)" "$out" '"sampled":true'
check_eq "three spans: A's server and client span, B's server span" "$(q count)" 3
check_eq "one trace, one root, no orphans" "$(q family)" "traces=1 roots=['call'] orphans=[]"
# Zipkin v1: a call's client and server halves share one span ID (X-Span);
# the server half's parent is the caller's span (X-Parent).
check_eq "B's server span has the ID of A's client span" "$(q field ok id)" "$(q field downstream.request id)"
check_eq "B's server span's parent is A's server span" "$(q parent ok@back)" "call@front"
check_eq "A's client span's parent is A's server span" "$(q parent downstream.request@front)" "call@front"
want=$($PY -c 'import sys; print("00-%032x-%016x-01" % (int(sys.argv[1]), int(sys.argv[2])))' "$(q field ok traceId)" "$(q field ok id)")
check_contains "the internal client sends W3C traceparent too" "$out" "\"traceparent\":\"$want\""
check_eq "valid" "$(q invalid)" ""
stop A

# --- a trace across HTTP and Thrift -----------------------------------------------------------
cp -r "$APPS/thriftapp.lua" "$APPS/thrift" "$TMP/"
sed "s/^\[server:main\]$/tracing.service_name = thriftback\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 0%\ntracing.span_batch_interval = 50 milliseconds\n\n&/" \
  "$APPS/thriftapp.ini" > "$TMP/T.ini"
start_server "$TMP/T.ini" || fail "the Thrift service starts"
mv "$LOG" "$TMP/T.log"; T_PORT=$PORT T_PID=$SERVER_PID T_LOG=$TMP/T.log; PIDS+=("$SERVER_PID"); SERVER_PID=
serve A "tracing.service_name = front\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 100%\ntracing.span_batch_interval = 50 milliseconds\ndown.endpoint = 127.0.0.1:$T_PORT" \
  || fail "A starts with a Thrift client"
: > "$SPANS"
out=$(curl -s "http://127.0.0.1:$A_PORT/thrift")
wait_spans 3
check_contains "the Thrift call answered" "$out" "whoami"
check_eq "three spans, one trace, no orphans" "$(q count) $(q family)" "3 traces=1 roots=['thrift'] orphans=[]"
check_eq "the Thrift server span has the ID of A's client span" "$(q field whoami id)" "$(q field down.whoami id)"
check_eq "its parent is A's server span" "$(q parent whoami@thriftback)" "thrift@front"
check_eq "valid" "$(q invalid)" ""
stop A
stop T

# --- W3C traceparent in (B trusts trace headers) ---------------------------------------------
: > "$SPANS"
curl -s -H 'traceparent: 00-00000000000000000000000000000064-00f067aa0ba902b8-01' "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01' "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'traceparent: 00-00000000000000000000000000000065-00f067aa0ba902b8-00' "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'traceparent: 00-0000000000000000000000000000006A-00f067aa0ba902b8-01' "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'X-Trace: 300' -H 'X-Span: 301' -H 'X-Sampled: 1' -H 'traceparent: 00-00000000000000000000000000000066-00f067aa0ba902b8-00' "http://127.0.0.1:$B_PORT/ok" > /dev/null
sleep 0.3
check_eq "traceparent: IDs converted (0x64 = 100, 00f067aa0ba902b8 = 67667974448284344), sampled flag kept" \
  "$(grep -o '"parentId": [0-9]*\|"traceId": [0-9]*' "$SPANS" | tr '\n' ' ')" \
  '"parentId": 67667974448284344 "traceId": 100 "parentId": 67667974448284344 "traceId": 11803532876627986230 "parentId": 0 "traceId": 300 '
check_eq "three traces sampled (not the unsampled one, not the uppercase one)" "$(q count)" 3

# --- W3C trace context passed on: a 128-bit trace ID and tracestate (A and B trust headers) -----
DOWNSTREAM="http://127.0.0.1:$B_PORT" serve A "tracing.service_name = front\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.span_batch_interval = 50 milliseconds\nbaseplate.trust_trace_headers = true" \
  || fail "A starts trusting trace headers"
out=$(curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01' -H 'tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' "http://127.0.0.1:$A_PORT/call")
check_contains "the 128-bit trace ID goes on whole in the traceparent A sends" "$out" '"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-'
check_contains "so does the tracestate" "$out" '"tracestate":"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"'
check_contains "B's span has it (span.tracestate)" "$out" '"span_tracestate":"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"'
check_contains "Baseplate's trace ID is the low half" "$out" '"trace":"11803532876627986230"'
# Baseplate headers and a traceparent of the same trace (as our clients send both)
out=$(curl -s -H 'X-Trace: 11803532876627986230' -H 'X-Span: 5' -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000005-01' -H 'tracestate: a=1' "http://127.0.0.1:$A_PORT/call")
check_contains "with X-Trace, a matching traceparent still brings the high half" "$out" '"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-'
check_contains "and the tracestate" "$out" '"tracestate":"a=1"'
out=$(curl -s -H 'X-Trace: 77' -H 'X-Span: 5' -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000005-01' -H 'tracestate: a=1' "http://127.0.0.1:$A_PORT/call")
check_contains "a traceparent of another trace is ignored" "$out" '"traceparent":"00-0000000000000000000000000000004d-'
check_eq "and so is its tracestate" "$(echo "$out" | grep -c tracestate)" 0
out=$(curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01' -H "tracestate: $(head -c 600 /dev/zero | tr '\0' a)=1" "http://127.0.0.1:$A_PORT/call")
check_eq "a tracestate over 512 characters is dropped" "$(echo "$out" | grep -c tracestate)" 0
sleep 0.3 # (these sampled spans reach the sink before the next part starts counting)
stop A

# --- sampling decisions (B: 0%, trusts its upstream) ------------------------------------------
: > "$SPANS"
curl -s "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'X-Trace: 100' -H 'X-Span: 101' -H 'X-Sampled: 0' "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'X-Trace: 200' -H 'X-Span: 201' -H 'X-Sampled: 1' -H 'X-Parent: 7' "http://127.0.0.1:$B_PORT/ok" > /dev/null
curl -s -H 'X-Trace: 300' -H 'X-Span: 301' -H 'X-Sampled: 0' -H 'X-Flags: 1' "http://127.0.0.1:$B_PORT/ok" > /dev/null
sleep 0.3
check_eq "0%: only upstream's sampled and debug traces" "$(q brief)" \
"server ok debug=true,http.method=GET,http.status_code=200,peer.ipv4=127.0.0.1
server ok http.method=GET,http.status_code=200,peer.ipv4=127.0.0.1"
check_eq "upstream IDs kept" "$(grep -cE '"traceId": 200[^0-9]' "$SPANS") $(grep -cE '"parentId": 7[^0-9]' "$SPANS")" '1 1'
stop B

serve B "tracing.service_name = back\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.span_batch_interval = 50 milliseconds\nbaseplate.trust_trace_headers = true" \
  || fail "B restarts"
: > "$SPANS"
curl -s -H 'X-Trace: 400' -H 'X-Span: 401' -H 'X-Sampled: 0' "http://127.0.0.1:$B_PORT/ok" > /dev/null
urls=(); for _ in $(seq 1 400); do urls+=("http://127.0.0.1:$B_PORT/ok"); done
curl -s "${urls[@]}" > /dev/null
sleep 0.3
n=$(q count)
if [ "$n" -ge 15 ] && [ "$n" -le 70 ]; then pass "default 10%: $n of 400 requests sampled"; else fail "default 10%" "$n of 400"; fi
check_eq "upstream's 'not sampled' wins" "$(grep -cE '"traceId": 400[^0-9]' "$SPANS")" 0
stop B

# --- a full in-memory queue drops with a counted warning -----------------------------------
serve C "tracing.service_name = c\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 100%\ntracing.max_span_queue_size = 3\ntracing.span_batch_interval = 1 seconds" \
  || fail "C starts"
: > "$SPANS"
urls=(); for _ in $(seq 1 20); do urls+=(-o /dev/null "http://127.0.0.1:$C_PORT/ok"); done
codes=$(curl -s -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | tr -s ' ')
check_eq "requests are served whatever the queue" "$codes" " 20 200"
sleep 1.5
check_eq "the queue kept 3 spans" "$(q count)" 3
check_contains "the drop is counted in a warning" "$(cat "$C_LOG")" "Trace queue is full: dropped 17 spans"
stop C

# --- a collector that fails: requests are unaffected ---------------------------------------
sink 500
serve D "tracing.service_name = d\ntracing.endpoint = 127.0.0.1:$SINK_PORT\ntracing.sample_rate = 100%\ntracing.span_batch_interval = 50 milliseconds" \
  || fail "D starts"
check_eq "served while the collector fails" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$D_PORT/ok")" 200
sleep 0.3
check_contains "the failure is logged" "$(cat "$D_LOG")" "Error while sending 1 spans: HTTP 500"
stop D
serve D "tracing.service_name = d\ntracing.endpoint = 127.0.0.1:1\ntracing.sample_rate = 100%\ntracing.span_batch_interval = 50 milliseconds" \
  || fail "D restarts"
check_eq "served while the collector is down" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$D_PORT/ok")" 200
sleep 0.5
check_contains "the failure is logged" "$(cat "$D_LOG")" "Error while sending 1 spans"
stop D

# --- the POSIX queue (the sidecar's input) ------------------------------------------------
QN=bptest-$$
TQ() { $PY "$TOOLS/trace_queue.py" "$@"; }
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; TQ unlink "traces-$QN"; cleanup' EXIT
TQ unlink "traces-$QN"
serve E "tracing.service_name = e\ntracing.queue_name = $QN\ntracing.sample_rate = 100%" || fail "E starts"
check_eq "the queue is created with mode 0644" "$(stat -c %a "/dev/mqueue/traces-$QN" 2>/dev/null || echo 644)" 644
curl -s "http://127.0.0.1:$E_PORT/child" > /dev/null
SPANS=$TMP/queue.$RANDOM
TQ drain "traces-$QN" "$SPANS"
check_eq "one message per span" "$(q count)" 4
check_eq "each a valid span" "$(q invalid)" ""
check_eq "the same spans as over HTTP" "$(q brief | cut -d' ' -f1,2)" "client payments.charge
client redis.get
local geocode
server child"
stop E
# a full queue (made small here) drops with a counted warning, never blocks
TQ create "traces-$QN" 2
serve E "tracing.service_name = e\ntracing.queue_name = $QN\ntracing.sample_rate = 100%" || fail "E restarts"
urls=(); for _ in $(seq 1 10); do urls+=(-o /dev/null "http://127.0.0.1:$E_PORT/ok"); done
codes=$(curl -s -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | tr -s ' ')
check_eq "requests served with the queue full" "$codes" " 10 200"
sleep 0.7
check_contains "the drop is counted in a warning" "$(cat "$E_LOG")" "Trace queue is full: dropped 8 spans"
: > "$SPANS"
TQ drain "traces-$QN" "$SPANS"
check_eq "the queue holds the first 2" "$(q count)" 2
stop E
TQ unlink "traces-$QN"

# --- baseplate-trace-publisher: the queue to the collector -----------------------------------
PUB_PIDS=()
# publisher "section lines" [STATUS]: a fresh sink answering STATUS at /api/v2/spans,
# and the publisher of queue $QN posting to it; sets PUB_PID, PUB_LOG
publisher() {
  SPANS=$TMP/pub.$RANDOM
  : > "$SPANS"
  rm -f "$TMP/sink.port"
  $PY "$TOOLS/zipkin_sink.py" "$TMP/sink.port" "$SPANS" "${2:-202}" /api/v2/spans &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
  printf '[trace-publisher:%s]\nzipkin_api_url = http://127.0.0.1:%s/api/v2\n%b\n' "$QN" "$(cat "$TMP/sink.port")" "$1" > "$TMP/pub.ini"
  PUB_LOG=$TMP/pub.log.$RANDOM
  "$BIN/baseplate-trace-publisher" --queue-name "$QN" "$TMP/pub.ini" > "$PUB_LOG" 2>&1 &
  PUB_PID=$!
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q Publishing "$PUB_LOG" && break; sleep 0.05; done
}
TQ unlink "traces-$QN"
publisher ""
check_contains "the publisher starts" "$(cat "$PUB_LOG")" "Publishing the spans of /traces-$QN to http://127.0.0.1:"
serve E "tracing.service_name = e\ntracing.queue_name = $QN\ntracing.sample_rate = 100%" || fail "E starts"
# (at most 9 spans at once: the queue may be as small as the system's
# default limit, 10 messages, and the publisher slow to drain it)
curl -s "http://127.0.0.1:$E_PORT/child" > /dev/null
urls=(); for _ in $(seq 1 5); do urls+=(-o /dev/null "http://127.0.0.1:$E_PORT/ok"); done
curl -s "${urls[@]}"
wait_spans 9
check_eq "the spans reach the collector" "$(q count)" 9
check_eq "valid, at /api/v2/spans, as JSON" "$(q invalid)" ""
check_eq "in one batch (within a second)" "$(q batches)" 1
check_eq "the same spans" "$(q brief | grep -v ' ok ' | cut -d' ' -f1,2)" "client payments.charge
client redis.get
local geocode
server child"
# a batch is at most max_batch_size bytes
kill -INT "$PUB_PID"; wait "$PUB_PID"; check_eq "the publisher exits 0 on SIGINT" "$?" 0
# (8 requests: the queue may be as small as the system's default limit, 10)
publisher "max_batch_size = 2048"
curl -s "${urls[@]}" "${urls[@]:0:9}"
wait_spans 8
check_eq "8 spans" "$(q count)" 8
b=$(q batches)
if [ "$b" -ge 4 ]; then pass "small batches ($b for 8 spans)"; else fail "small batches" "$b"; fi
kill -INT "$PUB_PID"; wait "$PUB_PID"
# 5xx: tried retry_limit times; 4xx: not tried again
publisher "retry_limit = 3" 503
curl -s -o /dev/null "http://127.0.0.1:$E_PORT/ok"
sleep 2.5
check_eq "a 503 is tried 3 times" "$(q batches)" 3
check_contains "then dropped with an error" "$(cat "$PUB_LOG")" "Failed to publish 1 spans to http://127.0.0.1:"
kill -INT "$PUB_PID"; wait "$PUB_PID"
publisher "retry_limit = 3" 400
curl -s -o /dev/null "http://127.0.0.1:$E_PORT/ok"
sleep 1.8
check_eq "a 400 is not tried again" "$(q batches)" 1
check_contains "the error says so" "$(cat "$PUB_LOG")" "HTTP 400 (not retried); dropped"
kill -INT "$PUB_PID"; wait "$PUB_PID"
stop E
TQ unlink "traces-$QN"
out=$("$BIN/baseplate-trace-publisher" --queue-name nope "$TMP/pub.ini" 2>&1); rc=$?
check_eq "a missing section" "$rc: $out" "1: baseplate-trace-publisher: error: $TMP/pub.ini: no [trace-publisher:nope] section"
printf '[trace-publisher:x]\nzipkin_api_url = http://h/api\npost_timeout = soon\n' > "$TMP/bad-pub.ini"
out=$("$BIN/baseplate-trace-publisher" --queue-name x "$TMP/bad-pub.ini" 2>&1)
check_eq "a bad value names the key" "$out" 'baseplate-trace-publisher: error: [trace-publisher:x] post_timeout: expected an integer of at least 1, got "soon"'
check_contains "--help" "$("$BIN/baseplate-trace-publisher" --help)" "usage: baseplate-trace-publisher [-h] [--queue-name QUEUE_NAME]"

# --- OTLP/HTTP JSON (tracing.otlp_endpoint) -------------------------------------------------------
SPANS=$TMP/otlp.$RANDOM
: > "$SPANS"
rm -f "$TMP/sink.port"
$PY "$TOOLS/zipkin_sink.py" "$TMP/sink.port" "$SPANS" 200 /v1/traces &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
serve O "tracing.service_name = otel\ntracing.otlp_endpoint = http://127.0.0.1:$(cat "$TMP/sink.port")/\ntracing.sample_rate = 100%\ntracing.span_batch_interval = 50 milliseconds\nbaseplate.trust_trace_headers = true" \
  || fail "O starts"
curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01' "http://127.0.0.1:$O_PORT/child" > /dev/null
wait_spans 4
check_eq "OTLP: four spans, valid OTLP JSON in an ExportTraceServiceRequest" "$(q count) $(q invalid)" "4 "
check_eq "OTLP: kinds, parents, attributes, status" "$($PY - "$SPANS" <<'PY'
import json, sys
spans = {s["name"]: s for s in (json.loads(l) for l in open(sys.argv[1]) if l.startswith("{"))}
srv = spans["child"]
attrs = lambda s: {a["key"]: list(a["value"].values())[0] for a in s["attributes"]}
print(srv["traceId"], srv.get("parentSpanId"), srv["kind"], spans["redis.get"]["kind"], spans["geocode"]["kind"])
print(all(s["traceId"] == srv["traceId"] for s in spans.values()),
      all(spans[n]["parentSpanId"] == srv["spanId"] for n in ("redis.get", "geocode", "payments.charge")))
a = attrs(srv)
print(a["color"], a["fresh"], a["count"], a["counter.things.done"], a["http.status_code"], attrs(spans["geocode"])["lc"])
print(spans["payments.charge"]["status"], "status" in srv)
PY
)" "4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b8 2 3 1
True True
blue True 7 3 200 maps
{'code': 2, 'message': 'Error'} False"
stop O
printf '[app:main]\nfactory = traceapp:make_app\ntracing.service_name = x\ntracing.endpoint = 127.0.0.1:1\ntracing.otlp_endpoint = http://127.0.0.1:1\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1)
check_contains "OTLP and Zipkin endpoints together are refused" "$out" "tracing.otlp_endpoint: cannot be combined with tracing.endpoint"

# --- configuration errors ---------------------------------------------------------------------
printf '[app:main]\nfactory = traceapp:make_app\ntracing.service_name = x\ntracing.sample_rate = 150%%\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1)
check_contains "a bad sample rate names the key" "$out" "tracing.sample_rate"
printf '[app:main]\nfactory = traceapp:make_app\ntracing.service_name = x\ntracing.endpoint = nowhere\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1)
check_contains "a bad endpoint names the key" "$out" "tracing.endpoint"

finish
