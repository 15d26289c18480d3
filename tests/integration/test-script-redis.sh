# baseplate-script with a client that waits on the loop: Redis through the
# Baseplate context, inside a server span (needs the services fixture).
. "$(dirname "$0")/lib.sh"

: "${BP_TEST_REDIS_URL:?set by ctest}"
cp "$APPS/scriptapp.lua" "$TMP/"
printf '[app:main]\ncache.url = %s\n' "$BP_TEST_REDIS_URL" > "$TMP/r.ini"
out=$(cd "$TMP" && "$BIN/baseplate-script" r.ini scriptapp:redis k$$ 2>&1; echo "rc=$?")
check_contains "SET then GET" "$out" "got value-k$$"
check_contains "INCR" "$out" "incr "
check_contains "exit 0" "$out" "rc=0"

printf '[app:main]\ncache.url = redis://127.0.0.1:1/0\n' > "$TMP/bad.ini"
out=$(cd "$TMP" && timeout 20 "$BIN/baseplate-script" bad.ini scriptapp:redis x 2>&1; echo "rc=$?")
check_contains "unreachable Redis: an error with a traceback" "$out" "stack traceback:"
check_contains "unreachable Redis: exit 1" "$out" "rc=1"
finish
