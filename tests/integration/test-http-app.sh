# Lua handlers over real HTTP: the request object, the response forms,
# errors, yielding handlers, keep-alive, pipelining and the size limits.
. "$(dirname "$0")/lib.sh"

export BP_TEST_ENV_VALUE="from-environment"
start_server "$APPS/testapp.ini" --debug || { fail "server starts"; finish; }

check_eq "table -> JSON" "$(curl -s "$(url /)")" '{"Hello":"World"}'
check_eq "string -> text" "$(curl -s -w ' %{content_type}' "$(url /text)")" "plain text text/plain; charset=utf-8"
check_eq "nil -> 204" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /nothing)")" 204
check_eq "status, body, headers" "$(curl -s -D - "$(url /status/418)" | tr -d '\r' | grep -E '^(HTTP|X-Test)|code')" "HTTP/1.1 418 Client Error
X-Test: yes
{\"code\":418}"
out=$(curl -s "$(url /params/one/t%20wo/rest/of/path)")
check_contains "path params" "$out" '"a":"one"'
check_contains "path params are decoded" "$out" '"b":"t wo"'
check_contains "*rest param" "$out" '"rest":"rest\/of\/path"'
out=$(curl -s "$(url '/query?x=1&y=a%20b&x=2&flag')")
check_contains "query args (last value wins)" "$out" '"x":"2"'
check_contains "query args decoded" "$out" '"y":"a b"'
check_contains "raw query string" "$out" '"raw":"x=1&y=a%20b&x=2&flag"'
out=$(curl -s -A "tester/1.0" -H "X-Custom: hello" "$(url /headers)")
check_contains "headers table (lower-cased names)" "$out" '"ua":"tester\/1.0"'
check_contains "request:header() is case-insensitive" "$out" '"x":"hello"'
check_contains "method/path/version" "$out" '"method":"GET"'
check_contains "http version" "$out" '"version":"1.1"'
out=$(curl -s -D - --data-binary 'some body bytes' -H 'Content-Type: application/octet-stream' "$(url /echo)" | tr -d '\r')
check_contains "explicit response status" "$out" "HTTP/1.1 201 Created"
check_contains "explicit response header" "$out" "X-Length: 15"
check_contains "explicit content type" "$out" "Content-Type: application/octet-stream"
check_contains "request body" "$out" "some body bytes"
check_eq "JSON request body" "$(curl -s --data '{"a":[1,2]}' "$(url /json)")" '{"got":{"a":[1,2]}}'
check_eq "bad JSON body is a 400" "$(curl -s -o /dev/null -w '%{http_code}' --data 'nope{' "$(url /json)")" 400
check_eq "any-method route" "$(curl -s -X DELETE "$(url /any)")" '{"method":"DELETE"}'
check_eq "HEAD on a GET route: no body" "$(curl -s -I "$(url /)" | tr -d '\r' | grep -E '^(HTTP|Content-Length)')" "HTTP/1.1 200 OK
Content-Length: 17"
check_eq "abort(status, body)" "$(curl -s -w ' %{http_code}' "$(url /abort)")" '{"error":"forbidden here"} 403'

# Streamed (chunked) responses, including a client slower than the server.
out=$(curl -s -D "$TMP/sh" "$(url /stream/5/10)")
check_eq "streamed body" "$out" "$(printf '000001xxx\n000002xxx\n000003xxx\n000004xxx\n000005xxx')"
check_contains "chunked transfer encoding" "$(tr -d '\r' < "$TMP/sh")" "Transfer-Encoding: chunked"
check_contains "headers of a streamed response" "$(tr -d '\r' < "$TMP/sh")" "X-Streamed: yes"
curl -s --limit-rate 2M "$(url /stream/3000/1024)" -o "$TMP/big"
check_eq "3 MB streamed to a slow reader: size" "$(wc -c < "$TMP/big")" 3072000
check_eq "3 MB streamed to a slow reader: last piece" "$(tail -n 1 "$TMP/big" | cut -c1-6)" "003000"
# A 24 MB response in one piece, read slowly: the socket takes part of it,
# the rest follows as the reader drains it; then the connection goes on.
curl -s --limit-rate 40M "$(url /large/24)" -o "$TMP/large" --next -s "$(url /)" -o "$TMP/after"
check_eq "24 MB response to a slow reader: size" "$(wc -c < "$TMP/large")" 24000000
# (a lost, repeated or reordered piece breaks the 10-byte pattern somewhere)
check_eq "24 MB response to a slow reader: every piece in order" "$(fold -w 10 "$TMP/large" | sort -u)" "0123456789"
check_eq "keep-alive after a large response" "$(cat "$TMP/after")" '{"Hello":"World"}'
check_eq "keep-alive after a streamed response" "$(curl -s "$(url /stream/2/10)" "$(url /)" | tail -c 17)" '{"Hello":"World"}'
out=$(RAW_TIMEOUT=3 raw "GET /stream/2/10 HTTP/1.0\r\n\r\n" | tr -d '\r')
check_contains "HTTP/1.0: the close ends the body" "$out" "$(printf '000001xxx\n000002xxx')"
curl -s "$(url /stream_error)" -o "$TMP/partial"
rc=$?
check_eq "a failing stream is cut, not completed" "$rc" 18
check_eq "what was sent before the failure" "$(cat "$TMP/partial")" "partial"
sleep 0.2
check_contains "the failure is logged" "$(cat "$LOG")" "streamed response failed in route stream_error: ./testapp.lua"
check_eq "HEAD on a streamed route" "$(curl -s -I "$(url /stream/2/10)" | tr -d '\r' | grep -E '^(HTTP|Transfer)')" "HTTP/1.1 200 OK
Transfer-Encoding: chunked"

# Config: DEFAULT inheritance, override, environment expansion, dotted keys.
check_eq "DEFAULT inherited" "$(curl -s "$(url /config/shared)")" '{"value":"from-default"}'
check_eq "DEFAULT overridden" "$(curl -s "$(url /config/overridden)")" '{"value":"from-app"}'
check_eq "\${VAR} from the environment" "$(curl -s "$(url /config/env_value)")" '{"value":"from-environment"}'
check_eq "dotted keys kept" "$(curl -s "$(url /config/noodles.blah)")" '{"value":"one, two, three"}'

# A handler error: 500, a logged traceback, and the server goes on.
out=$(curl -s -w ' %{http_code}' "$(url /error)")
check_eq "handler error -> 500" "$out" '{"error": 500, "reason": "Internal Server Error"} 500'
sleep 0.2
errline=$(grep 'unhandled error in route error' "$LOG" | head -n 1)
check_contains "error logged at ERROR" "$errline" '"level": "ERROR", "name": "baseplate.server.http"'
check_contains "error log has the message" "$errline" 'testapp.lua:36: deliberate failure'
check_contains "error log has the traceback" "$errline" '"exc_info": "'
check_contains "traceback names the handler's file" "$errline" 'stack traceback:'
# A body JSON cannot carry: 500 and a logged reason, never a request left hanging.
for what in function nan sparse; do
  out=$(curl -s -m 5 -w ' %{http_code}' "$(url /unserializable/$what)")
  check_eq "unserializable body ($what) -> 500" "$out" '{"error": 500, "reason": "Internal Server Error"} 500'
done
sleep 0.2
check_contains "unserializable body logged with cjson's reason" "$(grep 'cannot send the response of route unserializable' "$LOG")" \
  'Cannot serialise function: type not supported'
check_contains "NaN body logged" "$(cat "$LOG")" 'route unserializable: Cannot serialise number: must not be NaN or Inf'
check_contains "sparse body logged" "$(cat "$LOG")" 'route unserializable: Cannot serialise table: excessively sparse array'
out=$(curl -s -m 5 -w ' %{http_code}' "$(url /bad_header)")
check_eq "an error past the handler's protection -> 500, not a hanging request" "$out" '{"error": 500, "reason": "Internal Server Error"} 500'
applog=$(grep '"about to fail"' "$LOG" | head -n 1)
check_contains "Lua logger: module and line" "$applog" '"name": "testapp", "process": '
check_contains "Lua logger: module field" "$applog" '"module": "testapp", "lineno": 35'
check_eq "still serving after an error" "$(curl -s "$(url /)")" '{"Hello":"World"}'

# Yielding handlers overlap: 10 requests each wait (sleeping) until all 10
# have arrived; handlers run one after another would never see the tenth.
pids=
for i in $(seq 1 10); do curl -s -m 20 "$(url /together/ten/10)" -o "$TMP/together.$i" & pids="$pids $!"; done
wait $pids
check_eq "sleeping handlers overlap (all 10 at the barrier together)" \
  "$(cat "$TMP"/together.* | tr -d '\n')" "$(printf '{"together":true}%.0s' $(seq 1 10))"
check_contains "sleep result" "$(curl -s "$(url /sleep/300)")" '"slept":0.'

# Keep-alive: curl reuses the connection for several requests.
out=$(curl -sv "$(url /)" "$(url /text)" "$(url /)" 2>&1)
check_contains "keep-alive connection reused" "$out" "Re-using existing connection"
# Pipelining: three requests in one write, answered in order.
out=$(RAW_TIMEOUT=2 raw "GET /text HTTP/1.1\r\nHost: x\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" | tr -d '\r' | grep -E '^HTTP/1.1|plain text|Hello|code')
check_eq "pipelined requests answered in order" "$out" 'HTTP/1.1 200 OK
plain textHTTP/1.1 202 Accepted
{"code":202}HTTP/1.1 200 OK
{"Hello":"World"}'
# A client that half-closes after sending (nc -N) still gets every answer.
out=$(printf 'GET /text HTTP/1.1\r\nHost: x\r\n\r\nGET /sleep/50 HTTP/1.1\r\nHost: x\r\n\r\n' | timeout 5 nc -N 127.0.0.1 "$PORT" | grep -o 'HTTP/1.1 200 OK' | wc -l)
check_eq "half-closed client gets both answers" "$out" 2
# More pipelined requests than the server reads ahead while it sleeps in the
# first, then the end of input: every one is answered, and the server sees
# the end and closes (it must read on past a short read once the peer hung up).
rc=0
{ printf 'GET /sleep/200 HTTP/1.1\r\nHost: x\r\n\r\n'; for _ in $(seq 1 3000); do printf 'GET /text HTTP/1.1\r\nHost: x\r\n\r\n'; done; } |
  timeout 10 nc -N 127.0.0.1 "$PORT" > "$TMP/halfclose.out" || rc=$?
check_eq "3,001 pipelined requests then the end of input: all answered, then closed" "$rc $(grep -c 'HTTP/1.1 200 OK' "$TMP/halfclose.out")" "0 3001"
out=$(RAW_TIMEOUT=2 raw "GET / HTTP/1.0\r\n\r\n" | tr -d '\r' | head -n 1)
check_eq "HTTP/1.0 answered and closed" "$out" "HTTP/1.1 200 OK"

# Bad and hostile input.
out=$(RAW_TIMEOUT=2 raw "THIS IS NOT HTTP\r\n\r\n" | tr -d '\r' | head -n 1)
check_eq "garbage -> 400" "$out" "HTTP/1.1 400 Bad Request"
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
check_eq "oversized headers -> 431" "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$(url /)")" 431
out=$(RAW_TIMEOUT=2 raw "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" | tr -d '\r' | head -n 1)
check_eq "1 GB Content-Length -> 413" "$out" "HTTP/1.1 413 Payload Too Large"
# Random bytes, and random bytes after a valid request line, on many connections.
for i in $(seq 1 40); do
  if [ $((i % 2)) -eq 0 ]; then
    head -c $((RANDOM % 4000 + 1)) /dev/urandom
  else
    printf 'POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
    head -c $((RANDOM % 4000 + 1)) /dev/urandom
  fi | timeout 3 nc -N 127.0.0.1 "$PORT" > /dev/null 2>&1
done
check_eq "still serving after bad input" "$(curl -s "$(url /)")" '{"Hello":"World"}'

stop_server INT
check_eq "clean exit" "$SERVER_RC" 0
finish
