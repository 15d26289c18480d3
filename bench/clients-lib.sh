# Shared by bench/redis and bench/postgres (sourced): a private redis-server
# and PostgreSQL (tests/services.sh on free ports), baseplate-serve pinned to
# CPU 0, and wrk pinned to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
SERVE=$ROOT/$BUILD/bin/baseplate-serve
[ -x "$SERVE" ] || { echo "build first: make build" >&2; exit 1; }
for tool in wrk taskset curl redis-benchmark; do
  command -v $tool >/dev/null || { echo "missing $tool: scripts/install-deps --bench" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/bp-bench.XXXXXX)
chmod 755 "$TMP"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  BP_TEST_REDIS_PORT=$REDIS_PORT BP_TEST_PG_PORT=$PG_PORT tests/services.sh stop "$TMP" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
. bench/lib.sh # free_port
REDIS_PORT=$(free_port)
PG_PORT=$(free_port)
BP_TEST_REDIS_PORT=$REDIS_PORT BP_TEST_PG_PORT=$PG_PORT tests/services.sh start "$TMP" >/dev/null
# The servers share CPU 1 with the load generator; baseplate has CPU 0.
taskset -pc 1 "$(cat "$TMP/test-services/redis/redis.pid")" >/dev/null
for p in $(pgrep -f "test-services/pg/data" || true); do taskset -pc 1 "$p" >/dev/null 2>&1 || true; done

# serve APP_MODULE INI_EXTRA: start baseplate-serve on CPU 0; sets BP_PORT.
serve() {
  BP_PORT=$(free_port)
  printf '[app:main]\nfactory = %s:make_app\n%b\n[server:main]\nfactory = baseplate.server.http\n' "$1" "$2" > "$TMP/bench.ini"
  (cd "$TMP" && exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$BP_PORT" bench.ini) > "$TMP/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$BP_PORT/health" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "baseplate-serve did not start:" >&2; cat "$TMP/serve.log" >&2; exit 1
}

# wrk_rps PATH CONNS SECONDS: requests/s (keep-alive) and the p99 in ms.
wrk_rps() {
  taskset -c 1 wrk -t1 -c"$2" -d"$3s" --latency "http://127.0.0.1:$BP_PORT$1" > "$TMP/wrk.out"
  if grep -q "Non-2xx" "$TMP/wrk.out"; then echo "errors under load:" >&2; cat "$TMP/wrk.out" "$TMP/serve.log" >&2; exit 1; fi
  awk 'function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps = $2 } $1 == "99%" { p99 = ms($2) }
    END { printf "%.0f %.3f\n", rps, p99 }' "$TMP/wrk.out"
}
