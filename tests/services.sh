#!/usr/bin/env bash
# The servers the client tests talk to: a real redis-server, a real
# PostgreSQL, a real memcached and a real RabbitMQ, on loopback, on their own ports, with their data under the
# build directory. ctest runs `services.sh start` before the tests that need
# them and `services.sh stop` after (a fixture), so a fresh machine with
# nothing running works, and nothing is left behind.
#
#   tests/services.sh start|stop BUILD_DIR
#
# Ports: BP_TEST_REDIS_PORT (16379), BP_TEST_PG_PORT (15432) and
# BP_TEST_MEMCACHED_PORT (16411), BP_TEST_AMQP_PORT (16672; RabbitMQ's epmd
# listens on that port + 10000 and its distribution on + 20000). The tests find
# them as BP_TEST_REDIS_URL, BP_TEST_PG_URL, BP_TEST_MEMCACHED_ENDPOINT and
# BP_TEST_AMQP_URL (set by tests/CMakeLists.txt). RabbitMQ also listens for
# AMQP over TLS on BP_TEST_AMQPS_PORT (the AMQP port + 5), with certificates
# made here by openssl under BUILD_DIR/test-services/rabbitmq/tls: ca.pem
# (the test CA), server.pem/server.key (for localhost, not 127.0.0.1, signed
# by it), client.pem/client.key (signed by it), and other-ca.pem with
# other-client.pem/other-client.key (a CA the broker does not trust). BP_SERVICES ("redis postgres
# memcached amqp") picks which to start (scripts/serve-example starts only those
# whose port is free).
#
#   tests/services.sh amqp-restart BUILD_DIR   stop and start RabbitMQ's AMQP
#       application (every connection is dropped; durable queues and their
#       persistent messages stay) — the broker restart of the AMQP tests
#   tests/services.sh amqp-ctl BUILD_DIR ARGS...   rabbitmqctl ARGS on the test
#       broker (users, permissions, vhosts, closing connections)
set -euo pipefail
action=${1:?start or stop}
BUILD=${2:?build directory}
REDIS_PORT=${BP_TEST_REDIS_PORT:-16379}
PG_PORT=${BP_TEST_PG_PORT:-15432}
MEMCACHED_PORT=${BP_TEST_MEMCACHED_PORT:-16411}
AMQP_PORT=${BP_TEST_AMQP_PORT:-16672}
AMQPS_PORT=${BP_TEST_AMQPS_PORT:-$((AMQP_PORT + 5))}
DIR=$BUILD/test-services
SERVICES=" ${BP_SERVICES:-redis postgres memcached amqp} "
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
  case "$SERVICES" in *" amqp "*) start_amqp ;; esac
}

# RabbitMQ as a node of its own: its files (Mnesia, logs, the Erlang cookie
# in HOME) under $DIR/rabbitmq, its AMQP listener, epmd and distribution port
# on loopback on ports of their own, no plugins, the guest user allowed from
# loopback, and a TLS listener (make_tls). Start-up takes a few seconds.
amqp_env() {
  local d=$DIR/rabbitmq
  export HOME=$d RABBITMQ_NODENAME=bptest$AMQP_PORT@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000)) ERL_EPMD_PORT=$((AMQP_PORT + 10000)) \
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log \
    RABBITMQ_PID_FILE=$d/rabbit.pid RABBITMQ_CONFIG_FILE=$d/rabbitmq \
    RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins RABBITMQ_ENABLED_PLUGINS= \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
RMQ=/usr/lib/rabbitmq/bin

# The test CA, the broker's certificate and the clients' (openssl, a day).
make_tls() {
  local t=$1 ssl="openssl"
  mkdir -p "$t"
  (
    cd "$t"
    $ssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=baseplate test CA" -keyout ca.key -out ca.pem
    $ssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=baseplate other CA" -keyout other-ca.key \
      -out other-ca.pem
    printf 'subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth\n' >server.ext
    printf 'extendedKeyUsage = clientAuth\n' >client.ext
    $ssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    $ssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem
    $ssl req -newkey rsa:2048 -nodes -subj "/CN=baseplate test client" -keyout client.key -out client.csr
    $ssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem
    $ssl req -newkey rsa:2048 -nodes -subj "/CN=baseplate other client" -keyout other-client.key -out other-client.csr
    $ssl x509 -req -in other-client.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial -days 2 \
      -extfile client.ext -out other-client.pem
    chmod 644 ./*.key
  ) >"$t/make.log" 2>&1 || { echo "services: openssl could not make the test certificates" >&2; cat "$t/make.log" >&2; exit 1; }
}

start_amqp() {
  [ -x "$RMQ/rabbitmq-server" ] || { echo "services: rabbitmq-server is missing (scripts/install-deps)" >&2; exit 1; }
  mkdir -p "$DIR/rabbitmq"
  make_tls "$DIR/rabbitmq/tls"
  (
    amqp_env
    cd "$HOME"
    echo "[]." >enabled_plugins
    printf 'loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:%s\nlog.console = false\n' "$AMQP_PORT" >rabbitmq.conf
    # TLS: a client certificate is checked when one is sent (not required)
    printf 'listeners.ssl.1 = 127.0.0.1:%s\nssl_options.cacertfile = %s\nssl_options.certfile = %s\nssl_options.keyfile = %s\nssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n' \
      "$AMQPS_PORT" "$HOME/tls/ca.pem" "$HOME/tls/server.pem" "$HOME/tls/server.key" >>rabbitmq.conf
    "$RMQ/rabbitmq-server" -detached >"$HOME/start.log" 2>&1
    "$RMQ/rabbitmqctl" wait --timeout 60 "$RABBITMQ_PID_FILE" >>"$HOME/start.log" 2>&1
  ) || { echo "services: rabbitmq-server did not start" >&2; cat "$DIR/rabbitmq/start.log" "$DIR"/rabbitmq/log/*.log >&2 2>/dev/null; exit 1; }
  wait_port "$AMQP_PORT" 10 || { echo "services: rabbitmq-server does not listen" >&2; exit 1; }
  wait_port "$AMQPS_PORT" 10 || { echo "services: rabbitmq-server does not listen for TLS" >&2; exit 1; }
  echo "services: rabbitmq on 127.0.0.1:$AMQP_PORT (TLS: $AMQPS_PORT)"
}

amqp_restart() {
  (
    amqp_env
    "$RMQ/rabbitmqctl" stop_app >/dev/null
    "$RMQ/rabbitmqctl" start_app >/dev/null
  )
}

stop_amqp() {
  [ -f "$DIR/rabbitmq/rabbit.pid" ] || return 0
  (
    amqp_env
    "$RMQ/rabbitmqctl" stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
    epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
  )
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
  stop_amqp
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
  amqp-restart) amqp_restart ;;
  amqp-ctl) shift 2; ( amqp_env; "$RMQ/rabbitmqctl" -q "$@" ) ;;
  *) echo "usage: services.sh start|stop|amqp-restart|amqp-ctl BUILD_DIR" >&2; exit 2 ;;
esac
