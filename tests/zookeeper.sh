#!/usr/bin/env bash
# A real ZooKeeper for the live data tests (Debian's zookeeper package: its
# jar, run as a standalone server; the system service is neither needed nor
# touched), on loopback on BP_TEST_ZOOKEEPER_PORT (16281), its data and log
# under BUILD_DIR/test-zookeeper. ctest runs `start` before the tests whose
# name says zookeeper or live-data and `stop` after them (a fixture).
#
#   tests/zookeeper.sh start|stop BUILD_DIR
#   tests/zookeeper.sh restart BUILD_DIR [SECONDS]
#       stop the server, wait SECONDS (default 0), start it again with the
#       same data: every connection is lost, and sessions whose timeout
#       passed meanwhile have expired
#   tests/zookeeper.sh down BUILD_DIR | up BUILD_DIR
#       the two halves of a restart
#
# The server's tick is 200 ms, so sessions may be as short as 400 ms (the
# session expiry tests use one second).
set -euo pipefail
action=${1:?start, stop, restart, down or up}
BUILD=${2:?build directory}
PORT=${BP_TEST_ZOOKEEPER_PORT:-16281}
DIR=$BUILD/test-zookeeper
JAR=/usr/share/java/zookeeper.jar

ruok() {
  for _ in $(seq 1 $(($1 * 10))); do
    [ "$(echo ruok | nc -w 1 127.0.0.1 "$PORT" 2>/dev/null)" = imok ] && return 0
    sleep 0.1
  done
  return 1
}

up() {
  [ -f "$JAR" ] && command -v java >/dev/null || {
    echo "zookeeper: $JAR or java is missing (scripts/install-deps: zookeeper)" >&2; exit 1; }
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "zookeeper: port $PORT is already in use (BP_TEST_ZOOKEEPER_PORT)" >&2; exit 1
  fi
  mkdir -p "$DIR/data"
  cat >"$DIR/zoo.cfg" <<CFG
tickTime=200
dataDir=$DIR/data
clientPort=$PORT
clientPortAddress=127.0.0.1
minSessionTimeout=400
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,cons
CFG
  # (a small heap: several build trees may run one each)
  setsid java -Xmx128m -Dzookeeper.jmx.log4j.disable=true -cp "$JAR" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$DIR/zoo.cfg" >"$DIR/zookeeper.log" 2>&1 &
  echo $! >"$DIR/zookeeper.pid"
  ruok 60 && kill -0 "$(cat "$DIR/zookeeper.pid")" 2>/dev/null \
    || { echo "zookeeper: did not start" >&2; tail -20 "$DIR/zookeeper.log" >&2; exit 1; }
}

down() {
  if [ -f "$DIR/zookeeper.pid" ]; then
    pid=$(cat "$DIR/zookeeper.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/zookeeper.pid"
  fi
}

case "$action" in
  start) down; rm -rf "$DIR"; up; echo "zookeeper: on 127.0.0.1:$PORT" ;;
  stop) down; rm -rf "$DIR"; echo "zookeeper: stopped" ;;
  restart) down; sleep "${3:-0}"; up ;;
  down) down ;;
  up) up ;;
  *) echo "usage: zookeeper.sh start|stop|restart|down|up BUILD_DIR" >&2; exit 2 ;;
esac
