# --reload: a changed Lua file under the working directory restarts the app.
. "$(dirname "$0")/lib.sh"

app=$TMP/app
mkdir -p "$app/lib"
cat > "$app/reloadable.lua" <<'LUA'
local http = require("baseplate.http")
local answer = require("lib.answer")
return { make_app = function()
    local app = http.app()
    app:get("hello_world", "/", function() return { answer = answer } end)
    return app
end }
LUA
echo 'return "first"' > "$app/lib/answer.lua"
printf '[app:main]\nfactory = reloadable:make_app\n[server:main]\nfactory = baseplate.server.http\n' > "$app/r.ini"

start_server "$app/r.ini" --reload || { fail "server starts"; finish; }
check_eq "first version" "$(curl -s "$(url /)")" '{"answer":"first"}'
check_contains "watching logged" "$(cat "$LOG")" "--reload: watching Lua files under"

# change a module in a subdirectory; make sure its mtime moves forward
echo 'return "second"' > "$app/lib/answer.lua"
touch -d "@$(( $(date +%s) + 2 ))" "$app/lib/answer.lua"
for _ in $(seq 1 60); do
  [ "$(curl -s "$(url /)")" = '{"answer":"second"}' ] && break
  sleep 0.1
done
check_eq "reloaded after the change" "$(curl -s "$(url /)")" '{"answer":"second"}'
check_contains "reload logged" "$(cat "$LOG")" "./lib/answer.lua changed; reloading"
check_eq "same process (exec)" "$(grep -c "Listening on ('127.0.0.1', $PORT), PID:$SERVER_PID" "$LOG")" 2

# the restarted process still stops on a signal (the mask that blocked
# signals while the old one closed must not survive exec)
grep -q SigBlk /proc/$SERVER_PID/status && check_eq "no signal blocked after the reload" \
  "$(awk '/^SigBlk/ {print $2}' /proc/$SERVER_PID/status)" 0000000000000000
for sig in TERM INT; do
  stop_server $sig
  check_eq "SIG$sig stops the reloaded server" "$SERVER_RC" 0
  start_server "$app/r.ini" --reload || { fail "server starts again"; finish; }
  echo "return \"$sig\"" > "$app/lib/answer.lua"
  touch -d "@$(( $(date +%s) + 2 ))" "$app/lib/answer.lua"
  for _ in $(seq 1 60); do
    [ "$(curl -s "$(url /)")" = "{\"answer\":\"$sig\"}" ] && break
    sleep 0.1
  done
done
stop_server TERM
check_eq "SIGTERM stops the twice-reloaded server" "$SERVER_RC" 0
start_server "$app/r.ini" --reload || { fail "server starts again"; finish; }

# a syntax error in the new version: the restart fails with the usual clear line
echo 'return "third' > "$app/lib/answer.lua"
touch -d "@$(( $(date +%s) + 4 ))" "$app/lib/answer.lua"
for _ in $(seq 1 40); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
wait "$SERVER_PID"
rc=$?
SERVER_PID=
check_eq "a broken reload exits 1" "$rc" 1
check_contains "and says why" "$(cat "$LOG")" "baseplate-serve: error: r.ini: [app:main] factory: cannot load module 'reloadable'"
finish
