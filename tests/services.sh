#!/usr/bin/env bash
# The servers the client tests talk to: a real redis-server, a real
# PostgreSQL and a real memcached, on loopback, on their own ports, with their data under the
# build directory. ctest runs `services.sh start` before the tests that need
# them and `services.sh stop` after (a fixture), so a fresh machine with
# nothing running works, and nothing is left behind.
#
#   tests/services.sh start|stop BUILD_DIR
#
# Ports: BP_TEST_REDIS_PORT (16379), BP_TEST_PG_PORT (15432) and
# BP_TEST_MEMCACHED_PORT (16411). The tests find them as BP_TEST_REDIS_URL,
# BP_TEST_PG_URL and BP_TEST_MEMCACHED_ENDPOINT (set by tests/CMakeLists.txt).
# BP_SERVICES ("redis postgres memcached") picks which to start (scripts/serve-example
# starts only those whose port is free).
set -euo pipefail
action=${1:?start or stop}
BUILD=${2:?build directory}
REDIS_PORT=${BP_TEST_REDIS_PORT:-16379}
PG_PORT=${BP_TEST_PG_PORT:-15432}
MEMCACHED_PORT=${BP_TEST_MEMCACHED_PORT:-16411}
DIR=$BUILD/test-services
SERVICES=" ${BP_SERVICES:-redis postgres memcached} "
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

# PostgreSQL refuses to run as root: its files belong to a plain user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}
PG_USER=postgres
id -u postgres >/dev/null 2>&1 || PG_USER=nobody

wait_port() { # PORT SECONDS
  for _ in $(seq 1 $(($2 * 20))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

start() {
  stop quiet
  case "$SERVICES" in *" redis "*) start_redis ;; esac
  case "$SERVICES" in *" postgres "*) start_postgres ;; esac
  case "$SERVICES" in *" memcached "*) start_memcached ;; esac
}

# memcached with its default item size limit (1 MB), as the client's
# max_item_size default; -U 0: no UDP.
start_memcached() {
  command -v memcached >/dev/null || { echo "services: memcached is missing (scripts/install-deps)" >&2; exit 1; }
  mkdir -p "$DIR/memcached"
  local user=()
  if [ "$(id -u)" = 0 ]; then user=(-u nobody); chown nobody "$DIR/memcached"; fi
  memcached -d -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 "${user[@]}" \
    -P "$DIR/memcached/memcached.pid" 2>"$DIR/memcached/memcached.log"
  wait_port "$MEMCACHED_PORT" 10 || { echo "services: memcached did not start" >&2; cat "$DIR/memcached/memcached.log" >&2; exit 1; }
  echo "services: memcached on 127.0.0.1:$MEMCACHED_PORT"
}

start_redis() {
  command -v redis-server >/dev/null || { echo "services: redis-server is missing (scripts/install-deps)" >&2; exit 1; }
  mkdir -p "$DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --save "" --appendonly no \
    --daemonize yes --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log"
  wait_port "$REDIS_PORT" 10 || { echo "services: redis-server did not start" >&2; cat "$DIR/redis/redis.log" >&2; exit 1; }
  echo "services: redis on 127.0.0.1:$REDIS_PORT"
}

start_postgres() {
  [ -x "$PGBIN/initdb" ] || { echo "services: PostgreSQL is missing (scripts/install-deps)" >&2; exit 1; }
  mkdir -p "$DIR/pg"
  chmod 755 "$DIR" "$DIR/pg"
  if [ "$(id -u)" = 0 ]; then chown "$PG_USER" "$DIR/pg"; fi
  as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U baseplate --auth=trust -E UTF8 >"$DIR/pg/initdb.log" 2>&1 \
    || { echo "services: initdb failed" >&2; cat "$DIR/pg/initdb.log" >&2; exit 1; }
  # One role logs in with a password (the credentials_secret tests); every
  # other is trusted. The first matching line wins.
  { printf 'host all bp_secrets 127.0.0.1/32 scram-sha-256\nhost all bp_secrets ::1/128 scram-sha-256\n'
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
  } >"$DIR/pg/data/pg_hba.conf"
  as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$DIR/pg -c max_connections=200 -c fsync=off" \
    start >/dev/null || { echo "services: PostgreSQL did not start" >&2; cat "$DIR/pg/postgres.log" >&2; exit 1; }
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U baseplate -d postgres -qc "CREATE DATABASE baseplate" >/dev/null
  # bp_secrets: a role with a password for tests/lua/test-clients-credentials.lua
  # (the test changes the password; it is a fixture's, not a secret).
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U baseplate -d baseplate -q \
    -c "CREATE ROLE bp_secrets LOGIN PASSWORD 'bp-secrets-pw-1'" -c "GRANT ALL ON SCHEMA public TO bp_secrets" >/dev/null
  echo "services: postgresql on 127.0.0.1:$PG_PORT"
}

stop() {
  if [ -f "$DIR/redis/redis.pid" ]; then
    kill "$(cat "$DIR/redis/redis.pid")" 2>/dev/null || true
    rm -f "$DIR/redis/redis.pid"
  fi
  if [ -f "$DIR/memcached/memcached.pid" ]; then
    kill "$(cat "$DIR/memcached/memcached.pid")" 2>/dev/null || true
    rm -f "$DIR/memcached/memcached.pid"
  fi
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
  [ "${1:-}" = quiet ] || echo "services: stopped"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: services.sh start|stop BUILD_DIR" >&2; exit 2 ;;
esac
