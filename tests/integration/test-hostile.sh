# A hostile client against a real server: clients that vanish mid-response,
# requests whose framing is ambiguous or malformed, hostile sizes and
# slow senders. The server must answer each with a clear status (or close),
# and live on.
. "$(dirname "$0")/lib.sh"

H="python3 $SOURCE_DIR/tests/integration/tools/hostile.py"
start_server "$APPS/testapp.ini" || { fail "server starts"; finish; }
alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# --- 1. Clients that close their socket while a response is being written.
$H "$PORT" close-early /large/24 5
$H "$PORT" close-early /stream/3000/1024 5
sleep 0.3
if alive; then pass "a client closing mid-response does not kill the server"; else
  wait "$SERVER_PID"; fail "a client closing mid-response does not kill the server" "exit status $?"; finish; fi
check_eq "and it goes on serving" "$(curl -s "$(url /)")" '{"Hello":"World"}'
# --- 2. HTTP/1.1 framing (RFC 9112) and semantics (RFC 9110).
st() { $H "$PORT" status "$1" 2; }
check_eq "whitespace before a header's colon: 400" \
  "$(st 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nhello')" 400
check_eq "a tab before a header's colon: 400" "$(st 'GET / HTTP/1.1\r\nHost: t\r\nX-A\t: 1\r\n\r\n')" 400
out=$($H "$PORT" raw 'POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.0\r\n\r\n' 2 | tr -d '\r')
check_contains "HTTP/1.0 with Transfer-Encoding is answered" "$out" "HTTP/1.1 201 Created"
check_contains "and closed (Connection: close)" "$out" "Connection: close"
check_eq "nothing after it is read" "$(printf '%s' "$out" | grep -c '^HTTP/')" 1
for v in 2.0 1.2 0.9 3.1; do
  check_eq "HTTP/$v: 505" "$(st "GET / HTTP/$v\r\nHost: t\r\n\r\n")" 505
done
check_eq "HTTP/1.1 without Host: 400" "$(st 'GET / HTTP/1.1\r\n\r\n')" 400
check_eq "HTTP/1.1 with two Host: 400" "$(st 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')" 400
check_eq "HTTP/1.0 without Host: served" "$(st 'GET / HTTP/1.0\r\n\r\n')" 200
check_eq "Content-Length and Transfer-Encoding together: 400" \
  "$(st 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')" 400
check_eq "two different Content-Length: 400" \
  "$(st 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd')" 400
check_eq "a bare LF inside a header value: 400" "$(st 'GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n')" 400
check_eq "a NUL in the request target: 400" "$(st 'GET /\x00 HTTP/1.1\r\nHost: t\r\n\r\n')" 400
check_eq "a request line of garbage: 400" "$(st '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')" 400
check_eq "an unknown method: 400" "$(st 'BREW / HTTP/1.1\r\nHost: t\r\n\r\n')" 400
check_eq "a chunk size that overflows: 400" \
  "$(st 'POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n')" 400
check_eq "a negative Content-Length: 400" "$(st 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n')" 400
check_eq "a huge Content-Length: 413 before any body" \
  "$(st 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999\r\n\r\n')" 413
check_eq "CONNECT: 501" "$(st 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')" 501
out=$($H "$PORT" raw 'GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n' 2 | tr -d '\r')
check_contains "an Upgrade is ignored: served as a plain request" "$out" '{"Hello":"World"}'
check_eq "and the connection closes (no second answer)" "$(printf '%s' "$out" | grep -c '^HTTP/')" 1

# Limits: the configured ones are the real ones.
headers=$(python3 -c 'print("X-A: b\\r\\n" * 10000, end="")')
check_eq "10,000 small headers: 431" "$(st "GET / HTTP/1.1\r\nHost: t\r\n$headers\r\n")" 431
headers=$(python3 -c 'print("X-A: b\\r\\n" * 99, end="")')
check_eq "100 headers: served" "$(st "GET / HTTP/1.1\r\n$headers""Host: t\r\n\r\n")" 200
big=$(head -c 70000 /dev/zero | tr '\0' a)
check_eq "a 70 KB header over max_header_size (64 KiB): 431" "$(st "GET / HTTP/1.1\r\nHost: t\r\nX-Big: $big\r\n\r\n")" 431
pad=$(head -c 70000 /dev/zero | tr '\0' ' ')
check_eq "70 KB of whitespace in a header: 431" "$(st "GET / HTTP/1.1\r\nHost: t\r\nX-Pad:$pad""x\r\n\r\n")" 431

# Final statuses only; 204 and 304 carry neither body nor Content-Length.
check_eq "a handler answering 100: 500" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /status/100)")" 500
check_eq "a handler answering 101: 500" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /status/101)")" 500
wait_for_log "route status answered with status 101, which is not a final status" 2
check_contains "the 1xx is logged" "$(cat "$LOG")" "route status answered with status 100, which is not a final status (200-999); sent 500 instead"
check_eq "a stream with status 101: 500" "$(curl -s -w ' %{http_code}' "$(url /stream_status/101)")" '{"error": 500, "reason": "Internal Server Error"} 500'
wait_for_log "route stream_status cannot stream a response with status 101; sent 500 instead" 2 &&
  pass "the stream's 1xx is logged" || fail "the stream's 1xx is logged"
for code in 204 304; do
  out=$($H "$PORT" raw "GET /status/$code HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" 2 | tr -d '\r')
  check_contains "$code: the status" "$out" "HTTP/1.1 $code"
  if printf '%s' "$out" | grep -qi '^content-length'; then fail "$code: no Content-Length" "$out"; else pass "$code: no Content-Length"; fi
  check_eq "$code: no body" "$(printf '%s' "$out" | sed '1,/^$/d')" ""
done

# One error shape, whoever answers.
check_eq "404 body" "$(curl -s "$(url /no/such/route)")" '{"error": 404, "reason": "Not Found"}'
check_eq "400 body (server)" "$($H "$PORT" raw 'GET / HTTP/1.1\r\n\r\n' 2 | sed '1,/^\r$/d')" '{"error": 400, "reason": "Bad Request"}'
check_eq "400 body (bad JSON)" "$(curl -s --data 'nope{' "$(url /json)")" '{"error": 400, "reason": "request body is not valid JSON"}'
check_eq "400 body (health probe)" "$(curl -s "$(url '/health?type=bogus')")" '{"error": 400, "reason": "unknown probe type '"'bogus'"'"}'
check_eq "500 body" "$(curl -s "$(url /error)")" '{"error": 500, "reason": "Internal Server Error"}'

# Lingering close: refused with input still unread, the client gets the
# answer and a clean close, not a reset.
check_eq "413 with the body still coming: answer, then FIN" \
  "$($H "$PORT" send-then-read 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n' 300000)" "413 eof"
check_eq "400 with more input behind it: answer, then FIN" \
  "$($H "$PORT" send-then-read 'GET / HTTP/1.1\r\nHost: t\r\nBad\x01Header: x\r\n\r\n' 300000)" "400 eof"
check_eq "431 with more input behind it: answer, then FIN" \
  "$($H "$PORT" send-then-read "GET / HTTP/1.1\r\nHost: t\r\nX-Big: $big\r\n\r\n" 300000)" "431 eof"
out=$($H "$PORT" big-upload 40000000 10)
check_eq "a 40 MB upload over max_body_size: 413, no reset" "$out" "status 413"
check_eq "still serving" "$(curl -s "$(url /)")" '{"Hello":"World"}'
stop_server

# Configured limits beyond http_parser's built-in 80 KiB, and a body that
# trickles in: the whole body has body_timeout.
sed 's/^factory = baseplate.server.http$/&\nmax_header_size = 200000\nbody_timeout = 2 seconds\nmax_header_count = 20/' \
  "$APPS/testapp.ini" > "$APPS/.hostile-limits-$$.ini"
start_server "$APPS/.hostile-limits-$$.ini" || { fail "server with limits starts"; finish; }
rm -f "$APPS/.hostile-limits-$$.ini"
big_request() { printf 'GET / HTTP/1.1\r\nHost: t\r\nX-Big: '; head -c "$1" /dev/zero | tr '\0' a; printf '\r\n\r\n'; }
big_request 150000 > "$TMP/req150"
big_request 210000 > "$TMP/req210"
check_eq "max_header_size = 200000: a 150 KB header is served" "$(st "@$TMP/req150")" 200
check_eq "max_header_size = 200000: a 210 KB header is 431" "$(st "@$TMP/req210")" 431
headers=$(python3 -c 'print("X-A: b\\r\\n" * 20, end="")')
check_eq "max_header_count = 20: 21 headers are 431" "$(st "GET / HTTP/1.1\r\nHost: t\r\n$headers\r\n")" 431
check_eq "a body sent a byte every 0.5 s: 408 at body_timeout" "$($H "$PORT" trickle-body 8)" "408 after 2s"
stop_server

# --- 3. Memory: an idle keep-alive connection keeps about its own struct
# (its buffers go back after a second idle), and what a flood of
# connections took is given back when it is over. Sanitizer builds have an
# allocator of their own: RSS says nothing there.
case "$BUILD_DIR" in
  *asan*) ;;
  *)
    ulimit -n "$(ulimit -Hn)" 2>/dev/null
    n=3000
    [ "$(ulimit -n)" -gt $((n + 100)) ] || n=$(( $(ulimit -n) - 100 ))
    start_server "$APPS/testapp.ini" || { fail "server starts"; finish; }
    out=$($H "$PORT" memory "$SERVER_PID" "$n")
    per=$(printf '%s\n' "$out" | sed -n 's/^idle connection: \(-*[0-9]*\) bytes$/\1/p')
    kept=$(printf '%s\n' "$out" | sed -n 's/^after a flood of [0-9]*: \(-*[0-9]*\) KB kept$/\1/p')
    if [ -n "$per" ] && [ "$per" -le 4096 ]; then pass "an idle keep-alive connection costs <= 4 KB ($per bytes)"; else
      fail "an idle keep-alive connection costs <= 4 KB" "$out"; fi
    if [ -n "$kept" ] && [ "$kept" -le 8192 ]; then pass "memory is given back after a flood of $n connections ($kept KB kept)"; else
      fail "memory is given back after a flood of $n connections" "$out"; fi
    stop_server
    ;;
esac

# --- Out of file descriptors: logged, connections wait in the backlog, and
# are served once descriptors are free again.
start_server "$APPS/testapp.ini" || { fail "server starts"; finish; }
prlimit --nofile=48 --pid "$SERVER_PID"
$H "$PORT" hold 60 2 &
holder=$!
sleep 0.7
out=$(curl -s -m 6 -w ' %{http_code}' "$(url /)")
wait "$holder"
check_eq "a connection made while descriptors ran out is served once they are free" "$out" '{"Hello":"World"} 200'
check_contains "running out of descriptors is logged" "$(cat "$LOG")" "cannot accept connections: Too many open files"
check_contains "with the limit" "$(cat "$LOG")" "file descriptor limit 48"
check_eq "one log line for the whole episode" "$(grep -c 'cannot accept connections' "$LOG")" 1
check_eq "serving as before" "$(curl -s "$(url /)")" '{"Hello":"World"}'
stop_server

finish
