# The PostgreSQL client end to end: a running server, real requests (curl),
# the real PostgreSQL of tests/services.sh (BP_TEST_PG_URL), the StatsD
# datagrams it sends, and a private PostgreSQL of its own for the faults
# (not running at start-up, killed mid-way, frozen, back again).
. "$(dirname "$0")/lib.sh"

PG_URL=${BP_TEST_PG_URL:?set by ctest}
cp "$APPS/pgapp.lua" "$TMP/"

# The private cluster for the fault tests (PostgreSQL refuses to run as root).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_USER=postgres
id -u postgres >/dev/null 2>&1 || PG_USER=nobody
PRIV=$TMP/pg
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
priv_start() {
  as_pg "$PGBIN/pg_ctl" -D "$PRIV/data" -l "$PRIV/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PRIV_PORT -c unix_socket_directories=$PRIV -c fsync=off" \
    start >/dev/null
}
priv_stop() { as_pg "$PGBIN/pg_ctl" -D "$PRIV/data" -m immediate -w stop >/dev/null 2>&1; }
priv_pids() { # the postmaster and its children
  local pm
  pm=$(head -1 "$PRIV/data/postmaster.pid" 2>/dev/null) || return 0
  echo "$pm" $(ps -o pid= --ppid "$pm")
}

trap 'cleanup; [ -f "$PRIV/data/postmaster.pid" ] && { kill -CONT $(priv_pids) 2>/dev/null; priv_stop; }' EXIT

# serve_with "app lines" ["server lines"]
serve_with() {
  printf '[app:main]\nfactory = pgapp:make_app\n%b\n[server:main]\nfactory = baseplate.server.http\n%b\n' \
    "$1" "${2:-}" > "$TMP/pg.ini"
  start_server "$TMP/pg.ini"
}

get() { curl -s --max-time 20 "$(url "$1")"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$(url "$1")"; }
ms() { date +%s%3N; }

start_capture
serve_with "db.url = $PG_URL\ndb.pool_size = 50\ndb.statement_timeout = 1 second\nbaseplate.trust_trace_headers = true
metrics.namespace = myservice\nmetrics.endpoint = 127.0.0.1:$UDP_PORT" \
  "monitoring.interval = 200 milliseconds\nmonitoring.connection_pool = true" || { fail "server starts"; finish; }

# --- values both ways -------------------------------------------------------------------
out=$(get /types)
check_contains "int" "$out" '"i":7'
check_contains "int is a Lua number" "$out" '"itype":"number"'
check_contains "float" "$out" '"f":0.25'
check_contains "bool" "$out" '"b":false'
check_contains "bool is a Lua boolean" "$out" '"btype":"boolean"'
check_contains "text (UTF-8)" "$out" '"t":"héllo"'
check_contains "NULL is nil" "$out" '"n_is_nil":true'
check_contains "jsonb becomes a table" "$out" '"nested":{"x":1}'
check_contains "json array becomes a table" "$out" '"arr":[1,2,3]'

check_eq "execute: rows inserted" "$(get /setup)" '{"inserted":10}'
out=$(get /update)
check_contains "execute: rows updated" "$out" '"updated":4'
check_contains "execute: rows deleted" "$out" '"deleted":2'
check_contains "execute: no rows" "$out" '"none":0'

# --- transactions ---------------------------------------------------------------------
check_eq "transaction commits" "$(get /tx/commit)" '{"count_inside":10}'
out=$(get /tx/rollback)
check_contains "an SQL error rolls back" "$out" '"rows_after":0'
check_contains "and is raised again with its SQLSTATE" "$out" '"sqlstate":"23505"'
check_contains "the connection survives the rollback" "$out" '"connection_ok":true'
out=$(get /tx/rollback-lua)
check_contains "a Lua error rolls back" "$out" '"rows_after":0'
check_contains "and is raised again" "$out" '"raised":true'

# --- prepared statements -----------------------------------------------------------------
out=$(get /prepared)
check_contains "execute_prepared" "$out" '"changed":1'
check_contains "query_prepared" "$out" '"a":"renamed"'
check_contains "query_prepared, again" "$out" '"b":"item 3!"'
out=$(get /prepared)
check_contains "prepared once per connection" "$out" '"changed":1'

# --- errors ----------------------------------------------------------------------------
out=$(get /sqlerror)
check_contains "an SQL error is catchable" "$out" '"ok":false'
check_contains "with its SQLSTATE" "$out" '"sqlstate":"42P01"'
check_contains "and message" "$out" 'relation \"no_such_table\" does not exist'
check_contains "and class" "$out" '"class":"PostgresError"'
check_eq "an uncaught SQL error is a 500" "$(code /uncaught)" 500
check_eq "the pool is whole afterwards" "$(get /pool | grep -o '"in_use":[0-9]*')" '"in_use":0'

# --- the trace comment reaches the server ---------------------------------------------------
out=$(get /trace)
tid=$(printf '%s' "$out" | sed -E 's/.*"trace_id":"([0-9]+)".*/\1/')
if printf '%s' "$out" | grep -Eq -- "pg_backend_pid\(\) -- trace:$tid,span:[0-9]+\"" ; then
  pass "the statement carries -- trace:ID,span:ID"
else
  fail "the statement carries -- trace:ID,span:ID" "$out"
fi
out=$(curl -s -H 'X-Trace: 1234' -H 'X-Span: 5678' "$(url /trace)")
check_contains "with an upstream trace ID" "$out" "-- trace:1234,span:"

# --- spans and metrics ------------------------------------------------------------------
reset
get /one > /dev/null
check_eq "a statement is a client span {name}.execute" "$(lines)" "myservice.clients.db.execute:N|ms
myservice.server.one:N|ms
myservice.clients.db.execute.success:1|c
myservice.server.one.success:1|c"
reset
get /sqlerror > /dev/null
check_contains "a failed statement counts as a failure" "$(lines)" "myservice.clients.db.execute.failure:1|c"
reset
get /tx/commit > /dev/null
check_contains "a transaction is a span" "$(lines)" "myservice.clients.db.transaction.success:1|c"
check_eq "with its statements inside" "$(lines | grep -c '^myservice.clients.db.execute:N|ms$')" 4
sleep 0.3
host=$(cat /proc/sys/kernel/hostname)
check_contains "runtime.pool.size" "$(all_lines)" "runtime.pool.size,hostname=$host,PID=$SERVER_PID,client=db:50|g"
check_contains "runtime.pool.in_use" "$(all_lines)" "runtime.pool.in_use,hostname=$host,PID=$SERVER_PID,client=db:0|g"
check_contains "runtime.pool.open_and_available" "$(all_lines)" "runtime.pool.open_and_available,hostname=$host,PID=$SERVER_PID,client=db:"
check_contains "runtime.pool.overflow" "$(all_lines)" "runtime.pool.overflow,hostname=$host,PID=$SERVER_PID,client=db:0|g"

# --- not blocking the loop: 50 requests sleeping 0.2 s in PostgreSQL at once --------------------
urls=()
for _ in $(seq 1 50); do urls+=("$(url /sleep)"); done
t0=$(ms)
out=$(curl -s --max-time 20 --parallel --parallel-immediate --no-progress-meter --parallel-max 50 "${urls[@]}")
t1=$(ms)
check_eq "50 concurrent requests all served" "$(printf '%s' "$out" | grep -o '"ok":true' | wc -l)" 50
if [ $((t1 - t0)) -lt 2500 ]; then pass "50 x pg_sleep(0.2) in $((t1 - t0)) ms (serially: 10 s)"; else fail "50 x pg_sleep(0.2) concurrently" "$((t1 - t0)) ms"; fi

# --- statement timeouts: the server cancels, no slot is lost --------------------------------
urls=()
for _ in $(seq 1 30); do urls+=("$(url /slow)"); done
t0=$(ms)
out=$(curl -s --max-time 20 --parallel --parallel-immediate --no-progress-meter --parallel-max 30 "${urls[@]}")
t1=$(ms)
check_eq "30 statements cancelled by the server" "$(printf '%s' "$out" | grep -o '"sqlstate":"57014"' | wc -l)" 30
check_contains "as a TimeoutError" "$out" '"class":"TimeoutError"'
check_contains "that leaves the connection usable" "$out" '"connection_ok":true'
if [ $((t1 - t0)) -lt 4000 ]; then pass "after statement_timeout (1 s), together: $((t1 - t0)) ms"; else fail "timeouts are prompt" "$((t1 - t0)) ms"; fi
for _ in 1 2 3; do get /slow > /dev/null; done
out=$(get /pool)
check_contains "no lost slot: in_use back to 0" "$out" '"in_use":0'
check_contains "connections kept, not reopened" "$out" '"open":50'
check_eq "and still serving" "$(get /one)" '{"one":1}'
stop_server TERM
check_eq "clean exit" "$SERVER_RC" 0
check_eq "no errors logged at exit" "$(grep -ci 'sanitizer\|leak' "$LOG")" 0

# --- faults, with a private PostgreSQL -------------------------------------------------------
mkdir -p "$PRIV"
chmod 755 "$TMP" "$PRIV"
[ "$(id -u)" = 0 ] && chown "$PG_USER" "$PRIV"
as_pg "$PGBIN/initdb" -D "$PRIV/data" -U baseplate --auth=trust -E UTF8 >"$PRIV/initdb.log" 2>&1 \
  || { fail "initdb of the private cluster" "$(cat "$PRIV/initdb.log")"; finish; }
PRIV_PORT=$(random_port)
serve_with "db.url = postgresql://baseplate@127.0.0.1:$PRIV_PORT/postgres\ndb.pool_size = 4
db.statement_timeout = 1 second\ndb.connect_timeout = 2 seconds" || { fail "server starts (faults)"; finish; }

t0=$(ms)
check_eq "PostgreSQL not running: a 500" "$(code /one)" 500
t1=$(ms)
if [ $((t1 - t0)) -lt 1500 ]; then pass "at once, not a hang ($((t1 - t0)) ms)"; else fail "at once, not a hang" "$((t1 - t0)) ms"; fi
check_contains "the reason is logged" "$(cat "$LOG")" "Connection refused"

priv_start || { fail "the private cluster starts" "$(cat "$PRIV/postgres.log")"; finish; }
check_eq "PostgreSQL started: served" "$(get /one)" '{"one":1}'
bg=()
for _ in 1 2 3 4; do curl -s --max-time 20 "$(url /sleep)" > /dev/null & bg+=($!); done
sleep 0.1
t0=$(ms)
priv_stop
wait "${bg[@]}"
t1=$(ms)
if [ $((t1 - t0)) -lt 3000 ]; then pass "killed mid-way: requests in flight end ($((t1 - t0)) ms)"; else fail "killed mid-way: requests in flight end" "$((t1 - t0)) ms"; fi
check_eq "killed: a 500" "$(code /one)" 500
check_eq "killed: the pool is whole" "$(get /pool | grep -o '"in_use":[0-9]*')" '"in_use":0'
priv_start || { fail "the private cluster starts again"; finish; }
check_eq "back again: served at once" "$(get /one)" '{"one":1}'
check_eq "back again: served" "$(get /one)" '{"one":1}'

# Frozen server: no answer at all. The client's own limit (statement_timeout
# + 1 s) drops the connection.
kill -STOP $(priv_pids)
t0=$(ms)
c=$(code /one)
t1=$(ms)
kill -CONT $(priv_pids)
check_eq "a frozen server: a 500" "$c" 500
if [ $((t1 - t0)) -ge 1500 ] && [ $((t1 - t0)) -lt 4000 ]; then pass "after the client's limit ($((t1 - t0)) ms)"; else fail "after the client's limit" "$((t1 - t0)) ms"; fi
check_contains "logged as a timeout" "$(cat "$LOG")" "timed out after 2s waiting for the result"
check_eq "thawed: served" "$(get /one)" '{"one":1}'
check_eq "the pool is whole at the end" "$(get /pool | grep -o '"in_use":[0-9]*')" '"in_use":0'

# Shutting down with statements in flight and connections open.
bg=()
for _ in 1 2 3; do curl -s --max-time 20 "$(url /sleep)" > /dev/null & bg+=($!); done
sleep 0.05
stop_server TERM
check_eq "stops with statements in flight" "$SERVER_RC" 0
wait "${bg[@]}"
priv_stop
finish
