# The Redis client against a real redis-server: commands, errors, pipelines,
# spans and metrics, non-blocking waits, timeouts that never lose a pool
# slot, and a server that dies and comes back.
. "$(dirname "$0")/lib.sh"
REDIS_URL=${BP_TEST_REDIS_URL:?set by ctest}
cp "$APPS/redisapp.lua" "$TMP/"
start_capture
OWN_REDIS=
trap 'cleanup; [ -n "$OWN_REDIS" ] && kill $OWN_REDIS 2>/dev/null' EXIT

# serve URL [APP KEYS] [SERVER KEYS]
serve() {
  printf '[app:main]\nfactory = redisapp:make_app\ncache.url = %s\ncache.max_connections = 50\ncache.socket_timeout = %s\ncache.pool_timeout = 1 second\nmetrics.namespace = myservice\nmetrics.endpoint = 127.0.0.1:%s\n%b\n[server:main]\nfactory = baseplate.server.http\n%b\n' \
    "$1" "${SOCKET_TIMEOUT:-500 milliseconds}" "$UDP_PORT" "${2:-}" "${3:-}" > "$TMP/redis.ini"
  start_server "$TMP/redis.ini"
}

serve "$REDIS_URL" || { fail "server starts"; finish; }
check_eq "SET" "$(curl -s "$(url /set/greeting/hello)")" '{"reply":"OK"}'
check_eq "GET" "$(curl -s "$(url /get/greeting)")" '{"value":"hello"}'
check_eq "GET of a missing key is nil" "$(curl -s "$(url /get/missing)")" '{"value":"(nil)"}'
curl -s "$(url /set/n/41)" > /dev/null
check_eq "INCR returns a number" "$(curl -s "$(url /incr/n)")" '{"value":42}'
out=$(curl -s "$(url /error)")
check_contains "an error reply raises a RedisError" "$out" '"class":"RedisError"'
check_contains "carrying Redis's message" "$out" 'ERR value is not an integer'
out=$(curl -s "$(url /pipeline)")
check_contains "a pipeline: three replies" "$out" '"n":3'
check_contains "in order" "$out" '"first":"OK"'
check_contains "in order (3rd)" "$out" '"third":"a"'

reset
curl -s "$(url /get/greeting)" > /dev/null
lines=$(all_lines)
check_contains "the command is a client span: timer" "$lines" "myservice.clients.cache.GET:N|ms"
check_contains "the command is a client span: counter" "$lines" "myservice.clients.cache.GET.success:1|c"
: > "$DGRAMS"
curl -s "$(url /error)" > /dev/null
sleep 0.1
check_contains "a failed command counts as a failure" "$(cat "$DGRAMS")" "myservice.clients.cache.INCR.failure:1|c"
curl -s "$(url /pipeline)" > /dev/null
sleep 0.1
check_contains "a pipeline is one span" "$(cat "$DGRAMS")" "myservice.clients.cache.pipeline_counts.success:1|c"

check_eq "MessageQueue put/get" "$(curl -s "$(url /queue/hi)")" '{"got":"hi"}'
check_contains "MessageQueue get times out" "$(curl -s --max-time 5 "$(url /queue_empty)")" '"class":"TimeoutError"'

# Non-blocking: 50 requests each waiting 0.2 s in BLPOP at the same time.
t0=$(date +%s%3N)
pids=
for i in $(seq 1 50); do curl -s "$(url /blpop/200)" > "$TMP/blpop.$i" & pids="$pids $!"; done
wait $pids
t1=$(date +%s%3N)
ok=$(cat "$TMP"/blpop.* | grep -o '"result":"timeout"' | wc -l)
check_eq "50 concurrent BLPOPs all answered" "$ok" 50
if [ $((t1 - t0)) -lt 2500 ]; then pass "50 x 0.2 s waits took $((t1 - t0)) ms (not 10 s)"; else fail "waits are concurrent" "$((t1 - t0)) ms"; fi

# Timeouts while holding connections never lose pool slots.
pids=
for i in $(seq 1 20); do curl -s "$(url /slow)" > "$TMP/slow.$i" & pids="$pids $!"; done
wait $pids
check_eq "20 commands timed out" "$(cat "$TMP"/slow.* | grep -o '"class":"TimeoutError"' | wc -l)" 20
check_contains "no connection left checked out" "$(curl -s "$(url /pool)")" '"in_use":0'
check_eq "and the client works after them" "$(curl -s "$(url /get/greeting)")" '{"value":"hello"}'
stop_server TERM
check_eq "clean exit" "$SERVER_RC" 0

# The pool's runtime metrics, tagged with the client's name.
serve "$REDIS_URL" "" "monitoring.interval = 200 milliseconds\nmonitoring.connection_pool = true" || fail "server starts"
curl -s "$(url /get/greeting)" > /dev/null
: > "$DGRAMS"
sleep 0.5
check_contains "runtime.pool.size, tagged with the client" "$(grep runtime.pool.size "$DGRAMS")" ",client=cache:50|g"
check_contains "runtime.pool.in_use" "$(cat "$DGRAMS")" "runtime.pool.in_use,hostname="
stop_server TERM

# A server that is not there at start-up, dies under load, and comes back.
port=$((20000 + RANDOM % 10000))
SOCKET_TIMEOUT="10 seconds" serve "redis://127.0.0.1:$port/0" || { fail "server starts without redis"; finish; }
out=$(curl -s -w ' %{http_code}' --max-time 5 "$(url /get/greeting)")
check_contains "redis down: a 500, not a hang" "$out" " 500"
check_contains "redis down: the reason is logged" "$(cat "$LOG")" "redis 127.0.0.1:$port"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$TMP/own-redis.log" 2>&1 &
OWN_REDIS=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
check_eq "redis up: served" "$(curl -s --max-time 5 "$(url /set/k/v)")" '{"reply":"OK"}'
# Killed while 10 requests wait on it (BLPOP 5 s, socket timeout 10 s):
# they fail at once, they do not wait for a timeout.
pids=
for i in $(seq 1 10); do curl -s -o /dev/null -w '%{http_code}' --max-time 8 "$(url /blpop/5000)" > "$TMP/inflight.$i" & pids="$pids $!"; done
sleep 0.5
t0=$(date +%s%3N)
kill $OWN_REDIS; wait $OWN_REDIS 2>/dev/null; OWN_REDIS=
wait $pids
t1=$(date +%s%3N)
check_eq "redis killed under load: the requests in flight get a 500" "$(cat "$TMP"/inflight.* | grep -o 500 | wc -l)" 10
if [ $((t1 - t0)) -lt 2000 ]; then pass "at once ($((t1 - t0)) ms)"; else fail "at once" "$((t1 - t0)) ms"; fi
check_contains "redis killed: a 500" "$(curl -s -w ' %{http_code}' --max-time 5 "$(url /get/k)")" " 500"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$TMP/own-redis.log" 2>&1 &
OWN_REDIS=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
check_eq "redis back: served again" "$(curl -s --max-time 5 "$(url /set/k/v2)")" '{"reply":"OK"}'
check_eq "the server stayed up throughout" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /health)")" 200
stop_server TERM
check_eq "clean exit" "$SERVER_RC" 0

# Configuration errors name the key.
printf '[app:main]\nfactory = redisapp:make_app\ncache.url = rediss://localhost?ssl_cert_reqs=maybe\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
check_contains "a bad URL parameter names the key" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1)" "cache.url: ssl_cert_reqs must be required, optional or none"
printf '[app:main]\nfactory = redisapp:make_app\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
check_contains "a missing url" "$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1)" "cache.url:"
finish
