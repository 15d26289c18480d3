# Shared helpers for tests/integration/test-*.sh (sourced).
#
#   start_server CONFIG [ARGS...]   start baseplate-serve on a free port; sets PORT, SERVER_PID, LOG
#   stop_server [SIGNAL]            signal it (INT) and wait; sets SERVER_RC
#   check NAME CONDITION...         one assertion; counted
#   finish                          print "N passed, M failed" and exit accordingly
#   start_capture                   a StatsD stand-in on a UDP port; sets UDP_PORT, DGRAMS
#   all_lines / lines / reset       the captured lines (timers as N) / without runtime.* / forget them
set -u
BUILD_DIR=${BASEPLATE_BUILD_DIR:?set by ctest}
SOURCE_DIR=${BASEPLATE_SOURCE_DIR:?set by ctest}
BIN=$BUILD_DIR/bin
APPS=$SOURCE_DIR/tests/integration/apps
TMP=$(mktemp -d /tmp/bp-test.XXXXXX)
PASSED=0
FAILED=0
SERVER_PID=
trap 'cleanup' EXIT

cleanup() {
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  [ -n "${CAPTURE_PID:-}" ] && kill "$CAPTURE_PID" 2>/dev/null
  rm -rf "$TMP"
}

pass() { PASSED=$((PASSED + 1)); echo "ok     $1"; }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAILED $1"
  shift
  [ $# -gt 0 ] && printf '  %s\n' "$@"
  return 0
}

# check NAME GOT WANT: exact comparison
check_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got:  $2" "want: $3"; fi
}

# check_contains NAME HAYSTACK NEEDLE
check_contains() {
  case "$2" in
    *"$3"*) pass "$1" ;;
    *) fail "$1" "got:  $2" "want to contain: $3" ;;
  esac
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit $?
}

# A port below the kernel's ephemeral range: a client that reconnects to a
# closed port in that range can be given it as its own source port and
# connect to itself (TCP simultaneous open), which looks like a server.
random_port() {
  local low
  low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  [ "${low:-0}" -gt 12000 ] || low=32768
  echo $((10000 + (RANDOM % (low - 10000))))
}

# start_server CONFIG [ARGS...]: runs from the config file's directory.
start_server() {
  local config=$1
  shift
  local dir
  dir=$(dirname "$config")
  LOG=$TMP/server.log
  for attempt in 1 2 3 4 5 6 7 8; do
    PORT=$(random_port)
    (cd "$dir" && exec "$BIN/baseplate-serve" --bind "127.0.0.1:$PORT" "$@" "$(basename "$config")") \
      >"$LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
      if grep -q "Listening on" "$LOG" 2>/dev/null; then return 0; fi
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      sleep 0.05
    done
    wait "$SERVER_PID" 2>/dev/null
    if ! grep -q "Address already in use" "$LOG"; then
      echo "server did not start:"
      cat "$LOG"
      return 1
    fi
  done
  return 1
}

# stop_server [SIGNAL]: send the signal and wait up to 10 s.
stop_server() {
  local sig=${1:-INT}
  kill -"$sig" "$SERVER_PID"
  for _ in $(seq 1 200); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID"
    SERVER_RC=timeout
  else
    wait "$SERVER_PID"
    SERVER_RC=$?
  fi
  SERVER_PID=
}

url() { echo "http://127.0.0.1:$PORT$1"; }

# wait_for_log TEXT [SECONDS]: until the server's log contains TEXT.
wait_for_log() {
  local n=$(( ${2:-10} * 20 ))
  for _ in $(seq 1 "$n"); do grep -qF -- "$1" "$LOG" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

# raw REQUEST_BYTES: send bytes on a fresh connection, print the reply.
raw() {
  local out
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  printf '%b' "$1" >&3
  out=$(timeout "${RAW_TIMEOUT:-5}" cat <&3)
  exec 3<&-
  printf '%s' "$out"
}

# start_capture: a fresh StatsD stand-in (tests/udp-capture) recording every
# datagram it receives; sets UDP_PORT and DGRAMS (its output file).
start_capture() {
  [ -n "${CAPTURE_PID:-}" ] && kill "$CAPTURE_PID" 2>/dev/null
  DGRAMS=$TMP/dgrams.$RANDOM
  : > "$DGRAMS"
  rm -f "$TMP/udp.port"
  "$BUILD_DIR/tests/udp-capture" "$TMP/udp.port" "$DGRAMS" &
  CAPTURE_PID=$!
  for _ in $(seq 1 100); do [ -s "$TMP/udp.port" ] && break; sleep 0.02; done
  UDP_PORT=$(cat "$TMP/udp.port")
}

# all_lines: the captured lines (timer values as N), without the datagram
# marks; lines: the same without the runtime metrics (every 10 s, whenever
# the clock says); reset: forget what was captured.
all_lines() { sleep 0.1; grep -v '^--$' "$DGRAMS" | sed -E 's/:[0-9.e+-]+\|ms/:N|ms/'; }
lines() { all_lines | grep -v '^runtime\.'; }
reset() { sleep 0.1; : > "$DGRAMS"; }
