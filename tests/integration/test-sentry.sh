# The Sentry observer end to end: a running server (HTTP and Thrift) and
# baseplate-script, reporting to a stand-in for Sentry's ingestion API
# (tools/sentry_sink.py) that checks every event against Sentry's event
# payload schema; then 429s, a Sentry that is down or hangs, a full queue.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
cp "$APPS/sentryapp.lua" "$TMP/"
CTL=$TMP/ctl
mkdir -p "$CTL"

# start_sink: a fresh sink; sets SINK_PORT, EVENTS
start_sink() {
  [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
  EVENTS=$TMP/events.$RANDOM
  : > "$EVENTS"
  rm -f "$TMP/sink.port"
  $PY "$SOURCE_DIR/tests/integration/tools/sentry_sink.py" "$TMP/sink.port" "$EVENTS" "$CTL" &
  SINK_PID=$!
  for _ in $(seq 1 100); do [ -s "$TMP/sink.port" ] && break; sleep 0.05; done
  SINK_PORT=$(cat "$TMP/sink.port")
}
trap 'cleanup; [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null' EXIT

DSN_OF() { echo "http://pubkey:s3kr1t@127.0.0.1:$1/42"; }

# serve_with "app lines": sentryapp with these [app:main] keys
serve_with() {
  printf '[app:main]\nfactory = sentryapp:make_app\n%b\n[server:main]\nfactory = baseplate.server.http\nstop_timeout = 3 seconds\n' \
    "$1" > "$TMP/sentry.ini"
  start_server "$TMP/sentry.ini"
}

# wait_events N [SECONDS]: until the sink has recorded N requests
wait_events() {
  local n=$(( ${2:-5} * 20 ))
  for _ in $(seq 1 "$n"); do [ "$(wc -l < "$EVENTS")" -ge "$1" ] && return 0; sleep 0.05; done
  return 1
}
count() { wc -l < "$EVENTS" | tr -d ' '; }
# q EXPR: a Python expression over the recorded lines (`evs`: the list)
q() { $PY -c "import json,sys; evs=[json.loads(l) for l in open(sys.argv[1])]; print($1)" "$EVENTS"; }

# --- configuration errors ------------------------------------------------------------------
config_error() {
  printf '[app:main]\nfactory = sentryapp:make_app\n%b\n[server:main]\nfactory = baseplate.server.http\n' "$1" \
    > "$TMP/bad.ini"
  (cd "$TMP" && timeout 10 "$BIN/baseplate-serve" --bind 127.0.0.1:1 bad.ini 2>&1)
}
out=$(config_error "sentry.dsn = http://pubkey:s3kr1t@127.0.0.1:9/notanumber")
check_contains "a bad DSN names the key" "$out" "sentry.dsn: the project ID (the last part of the path) must be a number"
case "$out" in *s3kr1t*) fail "the DSN's secret is not in the error" "$out" ;; *) pass "the DSN's secret is not in the error" ;; esac
out=$(config_error "sentry.dsn = s3kr1t-garbage")
check_contains "a DSN that is no URL" "$out" "sentry.dsn: expected http(s)://PUBLIC_KEY@HOST/PROJECT_ID"
case "$out" in *s3kr1t*) fail "... without quoting it" "$out" ;; *) pass "... without quoting it" ;; esac
out=$(config_error "sentry.dsn = $(DSN_OF 9)\nsentry.sample_rate = 150%")
check_contains "a bad sample rate names the key" "$out" "sentry.sample_rate:"
out=$(config_error "sentry.dsn = $(DSN_OF 9)\nsentry.ignore_errors = Good, not a class")
check_contains "a bad ignore_errors names the key" "$out" "sentry.ignore_errors: not a class name"

# --- a failing HTTP handler ----------------------------------------------------------------------
start_sink
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")\nsentry.environment = staging\nsentry.release = 1.2.3\nsentry.server_name = web-7" \
  || { fail "server starts"; finish; }
check_contains "sentry is configured" "$(cat "$LOG")" "The following observers are unconfigured and won't run: metrics, tracing, server_timeout"
curl -s -H 'Cookie: session=c00kie' -H 'Authorization: Bearer t0ken' "$(url '/fail?what=x')" > /dev/null
wait_events 1 || fail "an event arrives for a failing handler"
check_eq "one event, valid against the schema" "$(q 'len(evs), evs[0]["problems"]')" "1 []"
check_eq "to the envelope endpoint" "$(q 'evs[0]["path"]')" "/api/42/envelope/"
check_eq "X-Sentry-Auth: key, secret, version" "$(q 'evs[0]["auth"]["sentry_key"], evs[0]["auth"]["sentry_secret"], evs[0]["auth"]["sentry_version"]')" "pubkey s3kr1t 7"
check_eq "class and message" "$(q 'evs[0]["event"]["exception"]["values"][0]["type"], evs[0]["event"]["exception"]["values"][0]["value"]')" \
  "Error ./sentryapp.lua:8: kaboom: x"
check_eq "unhandled" "$(q 'evs[0]["event"]["exception"]["values"][0]["mechanism"]["handled"]')" "False"
check_eq "level, platform, environment, release, server_name" \
  "$(q '[evs[0]["event"][k] for k in ("level", "platform", "environment", "release", "server_name")]')" \
  "['error', 'other', 'staging', '1.2.3', 'web-7']"
check_eq "the route is the transaction, the span name a tag" \
  "$(q 'evs[0]["event"]["transaction"], evs[0]["event"]["tags"]["span_name"]')" "fail fail"
tid=$(q 'evs[0]["event"]["tags"]["trace_id"]')
if [[ "$tid" =~ ^[0-9]+$ ]] && grep -q "\"traceID\": \"$tid\"" "$LOG"; then pass "the trace ID tag is the request's ($tid)"; else fail "the trace ID tag is the request's" "$tid"; fi
check_eq "the request: method, URL, query string" \
  "$(q 'sorted(evs[0]["event"]["request"].items())')" "[('method', 'GET'), ('query_string', 'what=x'), ('url', 'http://127.0.0.1:$PORT/fail')]"
case "$(cat "$EVENTS")" in *c00kie*|*t0ken*) fail "no cookie, no Authorization in the event" ;; *) pass "no cookie, no Authorization in the event" ;; esac
check_eq "the innermost frame: file, function, line, context" \
  "$(q '[evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-1][k] for k in ("filename", "function", "lineno", "context_line", "in_app")]')" \
  "['./sentryapp.lua', 'explode', 8, '    error(\"kaboom: \" .. what)', True]"
check_eq "... with the lines around it" \
  "$(q 'evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-1]["pre_context"][-1], evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-1]["post_context"][0]')" \
  "local function explode(what) end"
check_eq "the handler's frame below it" \
  "$(q '[evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-2][k] for k in ("filename", "lineno")]')" "['./sentryapp.lua', 17]"
check_eq "baseplate's own frames are not in_app" \
  "$(q 'all(not f["in_app"] for f in evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"] if "/baseplate/" in f["filename"] or f["filename"] == "[C]")')" "True"
case "$(cat "$LOG")" in *s3kr1t*) fail "the DSN's secret never reaches the log" ;; *) pass "the DSN's secret never reaches the log" ;; esac

: > "$EVENTS"
check_eq "capture_message returns the event ID" "$(curl -s "$(url /message)" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["id"]))')" 32
wait_events 1
check_eq "a message event" "$(q 'evs[0]["problems"], evs[0]["event"]["message"]["formatted"], evs[0]["event"]["level"], "exception" in evs[0]["event"], evs[0]["event"]["transaction"]')" \
  "[] hello from lua info False message"
: > "$EVENTS"
id=$(curl -s "$(url /captured)" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
wait_events 1
check_eq "capture_exception: handled, with its event ID" \
  "$(q 'evs[0]["problems"], evs[0]["event"]["event_id"], evs[0]["event"]["exception"]["values"][0]["value"], evs[0]["event"]["exception"]["values"][0]["mechanism"]["handled"]')" \
  "[] $id ./sentryapp.lua:8: kaboom: caught True"
: > "$EVENTS"
curl -s "$(url /classed)" > /dev/null
wait_events 1
check_eq "a table error's class" "$(q 'evs[0]["event"]["exception"]["values"][0]["type"], evs[0]["event"]["exception"]["values"][0]["value"]')" "Kaput kaput"
: > "$EVENTS"
check_eq "an uncaught table error: a 500" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /raised)")" 500
wait_events 1
check_eq "... its class, message and where it was raised reach Sentry" \
  "$(q 'evs[0]["problems"], evs[0]["event"]["exception"]["values"][0]["type"], evs[0]["event"]["exception"]["values"][0]["value"], evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-1]["lineno"]')" \
  "[] Kaput kaput raised 35"
check_contains "... and the log line" "$(cat "$LOG")" "unhandled error in route raised: Kaput: kaput raised"
: > "$EVENTS"
curl -s "$(url /spawned)" > /dev/null
wait_events 1
check_eq "a spawned coroutine that dies" \
  "$(q 'evs[0]["problems"], evs[0]["event"]["exception"]["values"][0]["value"], evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-2]["lineno"]')" \
  "[] ./sentryapp.lua:31: spawned boom 31"
: > "$EVENTS"
curl -s "$(url /unavailable)" "$(url /ok)" > /dev/null
sleep 0.5
check_eq "no event for abort(503) or a success" "$(count)" 0

# --- 429: sending pauses for Retry-After ---------------------------------------------------------
echo 2 > "$CTL/429"
curl -s "$(url /fail)" > /dev/null
wait_events 1
check_eq "the sink answered 429" "$(q 'evs[0]["status"]')" 429
curl -s "$(url '/fail?what=later')" > /dev/null
sleep 1
check_eq "nothing is sent during the pause" "$(count)" 1
wait_events 2 4 || fail "the event is sent after the pause"
check_eq "... then the event goes out, after Retry-After" \
  "$(q 'evs[1]["event"]["exception"]["values"][0]["value"], evs[1]["time"] - evs[0]["time"] >= 1.9')" "./sentryapp.lua:8: kaboom: later True"
check_contains "the pause is logged" "$(cat "$LOG")" "Sentry rate limit: sending paused for 2 seconds"
stop_server TERM
check_eq "the server stops" "$SERVER_RC" 0

# --- a request that times out -------------------------------------------------------------------
: > "$EVENTS"
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")\nserver_timeout.default = 200 milliseconds"
check_eq "a timed-out request: 504" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /slow)")" 504
wait_events 1
check_eq "... is a Sentry event: ServerTimeout, the log line's text, the route" \
  "$(q 'evs[0]["problems"], evs[0]["event"]["exception"]["values"][0]["type"], evs[0]["event"]["exception"]["values"][0]["value"], evs[0]["event"]["transaction"]')" \
  "[] ServerTimeout Server timed out processing for 'slow' after 0.20 seconds slow"
check_eq "... with where the request was waiting" \
  "$(q '[f["lineno"] for f in evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"] if f["filename"] == "./sentryapp.lua"]')" "[36]"
stop_server TERM

# --- what is queued at shutdown is sent ----------------------------------------------------------
: > "$EVENTS"
echo 0.3 > "$CTL/slow"
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")"
curl -s "$(url '/fail?what=1')" "$(url '/fail?what=2')" "$(url '/fail?what=3')" > /dev/null
stop_server TERM
rm -f "$CTL/slow"
check_eq "a graceful shutdown sends the queue first" "$(count) $SERVER_RC" "3 0"

# --- ignore_errors, sample_rate -------------------------------------------------------------------------
: > "$EVENTS"
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")\nsentry.ignore_errors = Error, other.Unrelated"
curl -s "$(url /fail)" "$(url /classed)" > /dev/null
wait_events 1
sleep 0.3
check_eq "ignore_errors = Error: only the Kaput" "$(q 'len(evs), evs[0]["event"]["exception"]["values"][0]["type"]')" "1 Kaput"
stop_server
: > "$EVENTS"
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")\nsentry.ignore_errors = my_service.Kaput"
curl -s "$(url /classed)" "$(url /fail)" > /dev/null
wait_events 1
sleep 0.3
check_eq "a dotted name ignores its last part's class" "$(q 'len(evs), evs[0]["event"]["exception"]["values"][0]["type"]')" "1 Error"
stop_server
: > "$EVENTS"
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")\nsentry.sample_rate = 0%"
curl -s "$(url /fail)" "$(url /message)" "$(url /classed)" > /dev/null
sleep 0.5
check_eq "sample_rate 0%: nothing sent" "$(count)" 0
stop_server

# --- a failing Thrift method ----------------------------------------------------------------------------
: > "$EVENTS"
printf '[app:main]\nfactory = thriftapp:make_processor\nsentry.dsn = %s\n[server:main]\nfactory = baseplate.server.thrift\n' \
  "$(DSN_OF "$SINK_PORT")" > "$TMP/thrift-sentry.ini"
cp "$APPS/thriftapp.lua" "$TMP/"
cp -r "$APPS/thrift" "$TMP/"
start_server "$TMP/thrift-sentry.ini" || fail "thrift server starts"
$PY - "$PORT" "$TMP/thrift" > "$TMP/thrift.out" 2>&1 <<'PYEOF'
import os, subprocess, sys, tempfile
out = tempfile.mkdtemp()
subprocess.check_call(["thrift", "-r", "--gen", "py", "-out", out, os.path.join(sys.argv[2], "testsvc.thrift")])
sys.path.insert(0, out)
from testsvc import Test
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport
t = TFramedTransport(TSocket("127.0.0.1", int(sys.argv[1])))
t.open()
c = Test.Client(TBinaryProtocol(t))
try:
    c.fail("thrifty")
except Exception as e:
    print("raised", type(e).__name__)
try:
    c.get(2)
except Exception as e:
    print("raised", type(e).__name__)
PYEOF
check_contains "the Thrift client gets an error" "$(cat "$TMP/thrift.out")" "raised TApplicationException"
wait_events 1
check_eq "a failing Thrift method: an event" \
  "$(q 'evs[0]["problems"], evs[0]["event"]["exception"]["values"][0]["value"].split("/")[-1], evs[0]["event"]["transaction"], evs[0]["event"]["tags"]["span_name"], "request" in evs[0]["event"]')" \
  "[] thriftapp.lua:29: boom: thrifty fail fail False"
check_eq "... with the method's frame" "$(q 'evs[0]["event"]["exception"]["values"][0]["stacktrace"]["frames"][-1]["context_line"].strip()')" 'error("boom: " .. how)'
wait_events 2
check_eq "a declared exception: its struct's name is the class" \
  "$(q 'evs[1]["problems"], evs[1]["event"]["exception"]["values"][0]["type"], evs[1]["event"]["exception"]["values"][0]["value"], evs[1]["event"]["transaction"]')" \
  "[] NotFound no such id get"
stop_server

# --- baseplate-script ---------------------------------------------------------------------------
: > "$EVENTS"
printf '[app:main]\nsentry.dsn = %s\n' "$(DSN_OF "$SINK_PORT")" > "$TMP/script.ini"
out=$(cd "$TMP" && timeout 20 "$BIN/baseplate-script" script.ini sentryapp:script_fail 2>&1; echo "rc=$?")
check_contains "a failing script fails" "$out" "rc=1"
wait_events 1 || true
check_eq "a failing script: its event is sent before it exits" \
  "$(q 'len(evs), evs[0]["problems"], evs[0]["event"]["exception"]["values"][0]["value"], evs[0]["event"]["transaction"]')" \
  "1 [] ./sentryapp.lua:8: kaboom: in a script baseplate-script"
: > "$EVENTS"
out=$(cd "$TMP" && timeout 20 "$BIN/baseplate-script" script.ini sentryapp:script_span_fail 2>&1; echo "rc=$?")
wait_events 1 || true
sleep 0.3
check_eq "a script's failing server span: one event, with the span" \
  "$(q 'len(evs), evs[0]["problems"], evs[0]["event"]["transaction"], evs[0]["event"]["exception"]["values"][0]["value"]')" \
  "1 [] nightly ./sentryapp.lua:8: kaboom: in a span"

# --- Sentry down: refused, hanging; a full queue ---------------------------------------------------------
# latency N PATH: the slowest of N requests, in ms (and the mean)
latency() {
  local urls=()
  for _ in $(seq 1 "$1"); do urls+=(-o /dev/null "$(url "$2")"); done
  curl -s -w '%{time_total}\n' "${urls[@]}" |
    awk '{ t = $1 * 1000; s += t; if (t > m) m = t } END { printf "%.1f %.2f\n", m, s / NR }'
}
serve_with "baseplate.service_name = x"
read -r base_max base_mean <<< "$(latency 200 /fail)"
stop_server
closed=$(random_port)
serve_with "sentry.dsn = $(DSN_OF "$closed")"
read -r ref_max ref_mean <<< "$(latency 200 /fail)"
echo "  failing requests, no Sentry: max ${base_max} ms, mean ${base_mean} ms; Sentry refusing: max ${ref_max} ms, mean ${ref_mean} ms"
if awk -v m="$ref_max" 'BEGIN { exit !(m < 250) }'; then pass "Sentry refusing connections: no request slowed (max $ref_max ms)"; else fail "Sentry refusing: requests not slowed" "max $ref_max ms"; fi
wait_for_log "Failed to send event to Sentry" 5
check_contains "the failure to send is a warning" "$(cat "$LOG")" "Failed to send event to Sentry"
check_eq "one warning for them all (rate-limited)" "$(grep -c 'Failed to send event to Sentry' "$LOG")" 1
case "$(cat "$LOG")" in *s3kr1t*) fail "no secret in the send warnings" ;; *) pass "no secret in the send warnings" ;; esac
stop_server

touch "$CTL/hang"
serve_with "sentry.dsn = $(DSN_OF "$SINK_PORT")"
read -r hang_max hang_mean <<< "$(latency 200 /fail)"
echo "  Sentry hanging: max ${hang_max} ms, mean ${hang_mean} ms"
if awk -v m="$hang_max" 'BEGIN { exit !(m < 250) }'; then pass "Sentry hanging: no request slowed (max $hang_max ms)"; else fail "Sentry hanging: requests not slowed" "max $hang_max ms"; fi
check_contains "a full queue drops events with a counted warning" "$(cat "$LOG")" "Sentry queue is full (100 events): dropped 1 event(s)"
t0=$(date +%s%N)
stop_server TERM
t1=$(date +%s%N)
check_eq "the server stops while Sentry hangs" "$SERVER_RC" 0
echo "  stopped in $(( (t1 - t0) / 1000000 )) ms"
rm -f "$CTL/hang"

finish
