# examples/c-extension: an application written in C against the public C
# API, loaded by factory name and served over HTTP.
. "$(dirname "$0")/lib.sh"

cp "$SOURCE_DIR/examples/c-extension/hello_c.ini" "$TMP/"
cp "$BUILD_DIR/lib/hello_c.so" "$TMP/"
start_server "$TMP/hello_c.ini" --debug || { fail "server starts"; finish; }
pass "server starts with a C factory"
check_contains "the C factory read its config and logged" "$(cat "$LOG")" '"message": "C application ready, greeting C"'
check_eq "C handler answers" "$(curl -s "$(url /)")" '{"Hello":"C"}'
out=$(curl -s -D - -H 'X-Request: abc' "$(url /echo/word)" | tr -d '\r')
check_contains "path parameter in C" "$out" "word=word abc"
check_contains "response header from C" "$out" "X-Handler: c"
check_eq "404 from the shared router" "$(curl -s -o /dev/null -w '%{http_code}' "$(url /nope)")" 404
sleep 0.2
check_contains "C requests in the access log" "$(cat "$LOG")" 'GET /echo/word HTTP/1.1\" 200'
stop_server INT
check_eq "clean exit" "$SERVER_RC" 0

# A shared object that is not a baseplate module, and a bad factory name.
printf '[app:main]\nfactory = hello_c:nope\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" bad.ini 2>&1)
check_contains "missing C factory symbol" "$out" "bad.ini: [app:main] factory: hello_c:nope: C module ./hello_c.so has no function 'nope'"
printf '[app:main]\nfactory = hello_c:make_app\ngreeting = "quoted"\n[server:main]\nfactory = baseplate.server.http\n' > "$TMP/bad2.ini"
out=$(cd "$TMP" && "$BIN/baseplate-serve" bad2.ini 2>&1)
check_contains "C factory error message" "$out" "bad2.ini: [app:main] factory: hello_c:make_app: greeting: must be under 128 characters, without quotes"

# The example also builds on its own with pkg-config against the build tree.
if cc -shared -fPIC -o "$TMP/hello_c2.so" "$SOURCE_DIR/examples/c-extension/hello_c.c" \
     -I"$SOURCE_DIR/include" -L"$BUILD_DIR/lib" -lbaseplate 2>"$TMP/cc.err"; then
  pass "builds with a plain cc command"
else
  fail "builds with a plain cc command" "$(cat "$TMP/cc.err")"
fi
finish
