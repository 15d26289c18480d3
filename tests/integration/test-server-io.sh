#!/usr/bin/env bash
# The server core's I/O path (docs/serve.md, `io`): io_uring where the
# kernel allows it, else epoll; `io = uring` where io_uring is refused is a
# start-up error naming the key, and `auto` says which path it took. Both
# paths serve the whole HTTP and Thrift suites: tests/CMakeLists.txt runs
# them once more with BASEPLATE_SERVER_IO=epoll (label server-io).
. "$(dirname "$0")/lib.sh"
unset BASEPLATE_SERVER_IO
NO_URING=$BUILD_DIR/tests/no-uring

cp "$SOURCE_DIR/examples/helloworld/helloworld.lua" "$TMP/"
HELLO='[app:main]\nfactory = helloworld:make_app\ndb.url = postgresql://baseplate@127.0.0.1:5432/baseplate\nredis.url = redis://127.0.0.1:6379/0\n\n[server:main]\nfactory = baseplate.server.http\n'
ini() { printf "$HELLO$1" > "$TMP/t.ini"; }
serve() {
  local out rc
  out=$(cd "$TMP" && "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | grep -v '"level"'
  echo "rc=$rc"
}
ring_open() { ls -l "/proc/$SERVER_PID/fd" 2>/dev/null | grep -c 'anon_inode:\[io_uring\]'; }
hello() { curl -s -m 5 "http://127.0.0.1:$PORT/"; }

# --- auto (the default): io_uring, where this kernel has it
ini ''
start_server "$TMP/t.ini" || { fail "server starts"; finish; }
if grep -q 'I/O: epoll (io_uring is not available' "$LOG"; then
  echo "# io_uring is not available here: $(grep -o 'io_uring is not available[^"]*' "$LOG")"
  echo "# the io_uring checks are skipped; the epoll ones run"
  HAVE_URING=0
else
  HAVE_URING=1
  check_contains "auto: io_uring where the kernel has it (logged)" "$(cat "$LOG")" '"I/O: io_uring"'
  check_eq "auto: the ring is open" "$(ring_open)" 1
  check_eq "auto: serves through it" "$(hello)" '{"Hello":"World"}'
fi
stop_server
check_eq "auto: stops cleanly" "$SERVER_RC" 0

# --- io = uring
if [ "$HAVE_URING" = 1 ]; then
  ini 'io = uring\n'
  start_server "$TMP/t.ini" || { fail "server starts"; finish; }
  check_contains "io = uring: logged" "$(cat "$LOG")" '"I/O: io_uring"'
  check_eq "io = uring: serves" "$(hello)" '{"Hello":"World"}'
  stop_server
fi

# --- io = epoll, and BASEPLATE_SERVER_IO=epoll for a config without the key
ini 'io = epoll\n'
start_server "$TMP/t.ini" || { fail "server starts"; finish; }
check_contains "io = epoll: logged" "$(cat "$LOG")" '"I/O: epoll"'
check_eq "io = epoll: no ring" "$(ring_open)" 0
check_eq "io = epoll: serves" "$(hello)" '{"Hello":"World"}'
stop_server
ini ''
BASEPLATE_SERVER_IO=epoll start_server "$TMP/t.ini" || { fail "server starts"; finish; }
check_contains "BASEPLATE_SERVER_IO=epoll: logged" "$(cat "$LOG")" '"I/O: epoll"'
check_eq "BASEPLATE_SERVER_IO=epoll: no ring" "$(ring_open)" 0
stop_server

# --- bad values: one line naming the file, section and key (or the variable)
ini 'io = fast\n'
check_eq "io = fast" "$(serve "$BIN/baseplate-serve" t.ini)" "baseplate-serve: error: t.ini: [server:main] io: expected auto, uring or epoll, got \"fast\"
rc=1"
ini ''
check_eq "BASEPLATE_SERVER_IO=fast" "$(BASEPLATE_SERVER_IO=fast serve "$BIN/baseplate-serve" t.ini)" \
  "baseplate-serve: error: BASEPLATE_SERVER_IO: expected auto, uring or epoll, got \"fast\"
rc=1"

# --- where io_uring is refused (a seccomp filter, as in a container)
ini 'io = uring\n'
check_eq "io = uring where io_uring is refused: a clear error" "$(serve "$NO_URING" "$BIN/baseplate-serve" t.ini)" \
  "baseplate-serve: error: t.ini: [server:main] io: io_uring is not available: io_uring_setup: Operation not permitted
rc=1"
ini ''
LOG_NO=$TMP/no-uring.log
PORT=$(random_port)
(cd "$TMP" && exec "$NO_URING" "$BIN/baseplate-serve" --bind "127.0.0.1:$PORT" t.ini) >"$LOG_NO" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "Listening on" "$LOG_NO" 2>/dev/null && break; sleep 0.05; done
check_contains "auto where io_uring is refused: falls back to epoll and says why" "$(cat "$LOG_NO")" \
  '"I/O: epoll (io_uring is not available: io_uring_setup: Operation not permitted)"'
check_eq "auto where io_uring is refused: serves" "$(hello)" '{"Hello":"World"}'
check_eq "auto where io_uring is refused: no ring" "$(ring_open)" 0
stop_server
check_eq "auto where io_uring is refused: stops cleanly" "$SERVER_RC" 0

finish
