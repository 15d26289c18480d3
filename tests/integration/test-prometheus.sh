# The admin listener (docs/prometheus.md, docs/introspection.md): the
# Prometheus exposition read by prometheus_client's parser, exact counts
# summed across workers and kept across a worker's restart, the overflow
# series, introspection of a sleeping request and of pools, the loopback
# rule, and config errors naming file, section and key.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
SCRAPE="$SOURCE_DIR/tests/integration/tools/prom_scrape.py"
if ! $PY -c 'import prometheus_client.parser' 2>"$TMP/err"; then
  fail "python3-prometheus-client is importable by /usr/bin/python3 (scripts/install-deps)" "$(cat "$TMP/err")"
  finish
fi

ADMIN=$(random_port)
export BP_TEST_ADMIN_BIND=127.0.0.1:$ADMIN BP_TEST_MAX_SERIES=1000 BP_TEST_INTROSPECTION=true BP_TEST_ADMIN_ALLOW=
admin() { echo "http://127.0.0.1:$ADMIN$1"; }
# who holds the admin port (printed when a start fails on it)
admin_holders() { ss -tanp 2>/dev/null | grep -E "[:.]$ADMIN[[:space:]]" | head -n 10; }
metric() { $PY "$SCRAPE" "$(admin /metrics)" "$@"; }
hit() { # hit PATH COUNT: COUNT requests, each on a new connection
  local urls
  urls=$(for _ in $(seq 1 "$2"); do printf '%s ' "$(url "$1")"; done)
  # shellcheck disable=SC2086
  curl -s -o /dev/null -H 'Connection: close' $urls
}

# --- config errors name file, section and key ---------------------------------
serve_error() { # serve_error BIND [KEY=VALUE env]: the one line on stderr
  (cd "$APPS" && BP_TEST_ADMIN_BIND=$1 "$BIN/baseplate-serve" --bind "127.0.0.1:$(random_port)" promapp.ini) 2>&1 | tail -n 1
}
check_contains "bad bind address: file, section, key" "$(serve_error nowhere)" \
  "baseplate-serve: error: promapp.ini: [server:main] metrics.prometheus.bind: "
check_contains "a UNIX path is refused" "$(serve_error /tmp/admin.sock)" \
  "promapp.ini: [server:main] metrics.prometheus.bind: expected host:port or [v6addr]:port, got \"/tmp/admin.sock\""
cat > "$TMP/bad.ini" <<EOF
[app:main]
factory = promapp
[server:main]
factory = baseplate.server.http
metrics.prometheus.bind = 127.0.0.1:$ADMIN
admin.allow = 10.0.0.0/8, nonsense
EOF
out=$(cd "$APPS" && "$BIN/baseplate-serve" --bind "127.0.0.1:$(random_port)" "$TMP/bad.ini" 2>&1 | tail -n 1)
check_contains "bad admin.allow: file, section, key" "$out" "bad.ini: [server:main] admin.allow: expected addresses or networks"
printf '[app:main]\nfactory = promapp\n[server:main]\nfactory = baseplate.server.http\nintrospection.enabled = true\n' > "$TMP/nobind.ini"
out=$(cd "$APPS" && "$BIN/baseplate-serve" --bind "127.0.0.1:$(random_port)" "$TMP/nobind.ini" 2>&1 | tail -n 1)
check_contains "introspection without the admin listener" "$out" "nobind.ini: [server:main] introspection.enabled: needs metrics.prometheus.bind"
# the admin port taken: the same error shape, with the reason
nc -l 127.0.0.1 "$ADMIN" >/dev/null 2>&1 & holder=$!
sleep 0.2
check_contains "admin port in use" "$(serve_error "127.0.0.1:$ADMIN")" \
  "promapp.ini: [server:main] metrics.prometheus.bind: 127.0.0.1:$ADMIN: cannot listen: Address already in use"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

# --- one process --------------------------------------------------------------
start_server "$APPS/promapp.ini" || { fail "server starts"; finish; }
check_contains "admin listener logged" "$(cat "$LOG")" "Admin endpoints on ('127.0.0.1', $ADMIN): /metrics, /introspect, /introspect.txt"
hit / 20
hit /fail 3
hit /call 2
hit /missing/x 2
hit /no/such/route 3
check_eq "exposition parses, histograms consistent" "$(metric --check)" valid
check_eq "requests counted" "$(metric http_server_requests_total http_endpoint=/ http_method=get http_success=true http_response_code=200)" 20
check_eq "failures counted with their status" "$(metric http_server_requests_total http_endpoint=/fail http_success=false http_response_code=500)" 3
check_eq "a 4xx answer is no success (as Baseplate.py's), labelled by the route's pattern" \
  "$(metric http_server_requests_total http_endpoint=/missing/{what} http_method=get http_success=false http_response_code=404)" 2
check_eq "latency histogram count" "$(metric http_server_latency_seconds_count http_endpoint=/ http_success=true)" 20
check_eq "every request in a bucket" "$(metric http_server_latency_seconds_bucket http_endpoint=/ le=+Inf)" 20
check_eq "client spans" "$(metric baseplate_client_requests_total client=things endpoint=fetch success=true)" 2
check_eq "a request no route matched: http_endpoint 404, as Baseplate.py's" \
  "$(metric http_server_requests_total http_endpoint=404 http_method=get http_success=false http_response_code=404)" 3
curl -s -o /dev/null "$(admin /no/such/page)"
check_eq "scrapes are not counted" "$(metric http_server_requests_total)" 30

# introspection: a sleeping request with its route and handler
curl -s -o /dev/null "$(url /sleep/2500)" & sleeper=$!
sleep 0.4
json=$(curl -s "$(admin /introspect)")
check_eq "introspect: the sleeping request, route and handler in its traceback" "$(printf '%s' "$json" | $PY -c '
import json, sys
w = json.load(sys.stdin)["workers"]
r = [r for x in w for r in x["requests"]]
print(len(w), [x["route"] for x in r], any("promapp.lua:27" in x["traceback"] and "sleep" in x["traceback"] for x in r),
      all(0.2 < x["age_seconds"] < 3 for x in r), w[0]["pid"] > 0, w[0]["lua_memory_bytes"] > 0)')" \
  "1 ['sleep'] True True True True"
page=$(curl -s "$(admin /introspect.txt)")
check_contains "the readable page names the request" "$page" "request GET /sleep/2500 (route sleep), for 0."
check_contains "the readable page has the traceback" "$page" "promapp.lua:27: in function"
wait "$sleeper"

# pools: one request holds the pool's only connection, another waits
curl -s -o /dev/null "$(url /hold/6000)" & h1=$!
sleep 0.2
curl -s -o /dev/null "$(url /hold/100)" & h2=$!
sleep 0.3
check_eq "introspect: pool in use and waiting" "$(curl -s "$(admin /introspect)" | $PY -c '
import json, sys
print([(p["name"], p["size"], p["in_use"], p["waiters"]) for p in json.load(sys.stdin)["workers"][0]["pools"]])')" \
  "[('things', 1, 1, 1)]"
# the gauges are written once a second: one scrape once they show the waiter
for _ in $(seq 1 40); do
  curl -s "$(admin /metrics)" > "$TMP/gauges.txt"
  grep -q '^baseplate_client_pool_waiters{pool="things",worker="1"} 1$' "$TMP/gauges.txt" && break
  sleep 0.1
done
saved() { $PY "$SCRAPE" "file:$TMP/gauges.txt" "$@"; }
check_eq "pool gauges: in use" "$(saved baseplate_client_pool_active_connections pool=things)" 1
check_eq "pool gauges: waiters" "$(saved baseplate_client_pool_waiters pool=things)" 1
check_eq "pool gauges: size" "$(saved baseplate_client_pool_max_size pool=things)" 1
check_eq "runtime gauge: active requests" "$(saved baseplate_active_requests)" 2
check_eq "runtime gauge: open connections" "$(saved baseplate_open_connections)" 2
wait "$h1" "$h2"
check_eq "bad worker parameter" "$(curl -s -o /dev/null -w '%{http_code}' "$(admin '/introspect?worker=x')")" 400
check_eq "no such worker" "$(curl -s -o /dev/null -w '%{http_code}' "$(admin '/introspect?worker=7')")" 404
stop_server TERM
check_eq "stops cleanly" "$SERVER_RC" 0

# --- loopback only unless admin.allow says otherwise -----------------------------
ext=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.' | grep -v '^127\.' | head -n 1)
if [ -n "$ext" ]; then
  # A fresh admin port for each start on 0.0.0.0 (the rest of the test keeps
  # its own): the wildcard address also collides with any other test's server
  # on 127.0.0.1 that happened to draw it.
  loopback_admin=$ADMIN
  ADMIN=$(random_port)
  BP_TEST_ADMIN_BIND=0.0.0.0:$ADMIN BP_TEST_INTROSPECTION=false start_server "$APPS/promapp.ini" || { fail "server starts (0.0.0.0)"; tail -n 5 "$LOG"; admin_holders; }
  check_eq "loopback may scrape" "$(curl -s -o /dev/null -w '%{http_code}' "$(admin /metrics)")" 200
  check_eq "another address may not ($ext)" "$(curl -s -o /dev/null -w '%{http_code}' "http://$ext:$ADMIN/metrics")" 403
  check_eq "introspection off by default" "$(curl -s -o /dev/null -w '%{http_code}' "$(admin /introspect)")" 404
  stop_server TERM
  ADMIN=$(random_port)
  BP_TEST_ADMIN_BIND=0.0.0.0:$ADMIN BP_TEST_ADMIN_ALLOW=$ext/32 start_server "$APPS/promapp.ini" || { fail "server starts (admin.allow)"; tail -n 5 "$LOG"; admin_holders; }
  check_eq "admin.allow lets it in" "$(curl -s -o /dev/null -w '%{http_code}' "http://$ext:$ADMIN/metrics")" 200
  stop_server TERM
  ADMIN=$loopback_admin
else
  fail "a non-loopback address to test the loopback rule with (hostname -I)"
fi

# --- Thrift: thrift_server_* -------------------------------------------------------
start_server "$APPS/thriftprom.ini" || fail "server starts (Thrift)"
$PY "$SOURCE_DIR/tests/integration/tools/thrift_client.py" "$PORT" "$APPS/thrift" header-binary >/dev/null 2>&1
check_eq "Thrift calls counted" "$(metric thrift_server_requests_total thrift_method=get thrift_success=true)" 1
check_eq "Thrift exceptions by type" "$(metric thrift_server_requests_total thrift_method=get thrift_success=false thrift_exception_type=NotFound)" 1
check_eq "Thrift latency" "$(metric thrift_server_latency_seconds_count thrift_method=get)" 2
check_eq "an exception without a code has no Baseplate status" \
  "$(metric thrift_server_requests_total thrift_method=get thrift_exception_type=NotFound thrift_baseplate_status= thrift_baseplate_status_code=)" 1
# an exception with a code (as baseplate.thrift's Error): its code and name label the counter
mkdir -p "$TMP/py"
thrift -r --gen py -out "$TMP/py" "$APPS/thrift/testsvc.thrift"
PYTHONPATH="$TMP/py" $PY - "$PORT" > "$TMP/coded.out" 2>&1 <<'PYEOF'
import sys
from testsvc import Test
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TSocket import TSocket
p = THeaderProtocol(TSocket("127.0.0.1", int(sys.argv[1])), [THeaderClientType.HEADERS])
p.trans.open()
try:
    Test.Client(p).get(404)
except Exception as e:
    print(type(e).__name__, getattr(e, "code", None))
PYEOF
check_eq "the call raised the coded exception" "$(cat "$TMP/coded.out")" "NotFound 404"
check_eq "Thrift Baseplate status and code" \
  "$(metric thrift_server_requests_total thrift_method=get thrift_success=false thrift_exception_type=NotFound thrift_baseplate_status=NOT_FOUND thrift_baseplate_status_code=404)" 1
check_eq "the histogram sums over the codes" "$(metric thrift_server_latency_seconds_count thrift_method=get thrift_success=false)" 2
check_eq "still valid (Thrift)" "$(metric --check)" valid
stop_server TERM

# --- label sets beyond max_series ------------------------------------------------
BP_TEST_MAX_SERIES=16 start_server "$APPS/promapp.ini" || fail "server starts (max_series 16)"
for i in $(seq 1 12); do hit "/r$i" 1; done
hit /r1 2
check_eq "every request counted, overflow included" "$(metric http_server_requests_total)" 14
check_eq "the overflow series" "$(metric http_server_requests_total http_endpoint=_overflow)" 4
check_eq "the overflow counter" "$(metric baseplate_prometheus_overflow_total)" 4
check_eq "still valid" "$(metric --check)" valid
stop_server TERM

# --- three workers: exact sums, kept across a restart ----------------------------
start_server "$APPS/promapp.ini" --workers 3 || { fail "server starts (workers)"; finish; }
for _ in $(seq 1 100); do [ "$(grep -c 'Listening on' "$LOG")" = 3 ] && break; sleep 0.1; done
hit / 90
check_eq "90 requests over 3 workers, summed" "$(metric http_server_requests_total http_endpoint=/)" 90
served=$(metric http_server_requests_total http_endpoint=/ | head -n 1)
check_eq "histogram sums too" "$(metric http_server_latency_seconds_count http_endpoint=/)" 90
check_eq "three runtime gauges" "$(curl -s "$(admin /metrics)" | grep -c '^baseplate_lua_memory_bytes{worker=')" 3
# every worker served some (connections are spread by the kernel)
curl -s -o "$TMP/in.json" "$(admin /introspect)"
check_eq "introspect: one answer per worker" "$($PY -c 'import json,sys; print(sorted(w["worker"] for w in json.load(open(sys.argv[1]))["workers"]))' "$TMP/in.json")" "[1, 2, 3]"

victim=$(pgrep -P "$SERVER_PID" | head -n 1)
kill -KILL "$victim"
# scrape while it is replaced: the total never goes down
# (curl and awk here, to scrape often: the parser's checks come after)
hello_total() { curl -s "$(admin /metrics)" | awk '/^http_server_requests_total\{.*http_endpoint="\/"/ { n += $NF } END { print n + 0 }'; }
low=$served bad=
for _ in $(seq 1 40); do
  v=$(hello_total)
  [ "$v" -lt "$low" ] && bad="$bad $v"
  low=$v
  sleep 0.02
done
check_eq "never lower while a worker restarts" "${bad:-none}" none
wait_for_log "worker PID:$victim was killed by SIGKILL" 5
for _ in $(seq 1 100); do [ "$(grep -c 'Listening on' "$LOG")" = 4 ] && break; sleep 0.1; done
check_eq "the dead worker's requests kept" "$(metric http_server_requests_total http_endpoint=/)" 90
hit / 30
check_eq "and the new worker's added" "$(metric http_server_requests_total http_endpoint=/)" 120
check_eq "retired workers" "$(metric baseplate_workers_retired_total)" 1
check_eq "three runtime gauges after the restart" "$(curl -s "$(admin /metrics)" | grep -c '^baseplate_lua_memory_bytes{worker=')" 3
check_eq "valid after the restart" "$(metric --check)" valid

# introspection across workers: the sleeping request is in one worker's answer
curl -s -o /dev/null "$(url /sleep/2500)" & sleeper=$!
sleep 0.4
curl -s -o "$TMP/in.json" "$(admin /introspect)"
check_eq "introspect across workers: the sleeper in exactly one" "$($PY -c '
import json, sys
w = json.load(open(sys.argv[1]))["workers"]
print(len(w), [(r["route"], "promapp.lua:27" in r["traceback"]) for x in w for r in x["requests"]])' "$TMP/in.json")" \
  "3 [('sleep', True)]"
busy=$($PY -c 'import json,sys; print([w["worker"] for w in json.load(open(sys.argv[1]))["workers"] if w["requests"]][0])' "$TMP/in.json")
check_eq "?worker=N: that worker alone" "$(curl -s "$(admin "/introspect?worker=$busy")" | $PY -c '
import json, sys
w = json.load(sys.stdin)["workers"]
print(len(w), w[0]["worker"], len(w[0]["requests"]))')" "1 $busy 1"
check_contains "the page, across workers" "$(curl -s "$(admin /introspect.txt)")" "route sleep"
wait "$sleeper"
stop_server TERM
check_eq "supervisor stops cleanly" "$SERVER_RC" 0
finish
