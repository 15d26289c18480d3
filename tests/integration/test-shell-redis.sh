# baseplate-shell with a client that waits on the loop: context.cache:ping()
# at the prompt (needs the services fixture's redis-server).
. "$(dirname "$0")/lib.sh"

: "${BP_TEST_REDIS_URL:?set by ctest}"
cp "$APPS/shellapp.lua" "$TMP/"
printf '[app:main]\nfactory = shellapp:make_redis_app\ncache.url = %s\n' "$BP_TEST_REDIS_URL" > "$TMP/r.ini"
out=$(printf '%s\n' 'context.cache:ping()' 'context.cache:set("shell:k", "v")' 'context.cache:get("shell:k")' \
  | (cd "$TMP" && timeout 20 "$BIN/baseplate-shell" r.ini 2>&1); echo "rc=$?")
check_contains "PING at the prompt" "$out" '"PONG"'
check_contains "GET at the prompt" "$out" '"v"'
check_contains "exit 0" "$out" "rc=0"
finish
