# baseplate-shell driven through a pipe, a file, and a pseudo-terminal (line
# editing, history, Ctrl-C, Ctrl-D): the environment and banner, readable
# results, multi-line input, errors that do not end the shell, inputs that
# wait on the loop, coroutines served while the shell waits for input, and
# the start-up errors.
. "$(dirname "$0")/lib.sh"

cp "$APPS/shellapp.lua" "$TMP/"
printf '[app:main]\nfactory = shellapp:make_app\ngreeting = hi there\n[shell]\nsetup = shellapp:setup\n' > "$TMP/s.ini"
shell() { (cd "$TMP" && timeout 20 "$BIN/baseplate-shell" "$@" 2>&1); echo "rc=$?"; }

# --- a piped session ---------------------------------------------------------------------
out=$(printf '%s\n' \
  '1 + 1' \
  't = { 1, 2, { a = 1 }, name = "x\ty", [10] = true }' \
  't' \
  '"two", nil, 3' \
  'for i = 1, 2 do' \
  '  print("line " .. i)' \
  'end' \
  'error("oops")' \
  'this is not lua' \
  'local ok = true; return ok' \
  'app.config.greeting' \
  'context.greeting' \
  'context.span.name' \
  'models.count' \
  'baseplate.sleep(0.05); return "slept"' \
  | shell s.ini)
check_contains "banner: title" "$out" "Baseplate Interactive Shell"
check_contains "banner: the objects, sorted" "$out" "Available Objects:

  app          This project's app instance
  baseplate    The baseplate module
  context      The context for this shell instance's span
  models       Models module"
check_contains "expression result" "$out" "
2
"
check_contains "tables printed readably" "$out" '{ 1, 2, { a = 1 }, [10] = true, name = "x\ty" }'
check_contains "several results" "$out" '"two"	nil	3'
check_contains "multi-line statement" "$out" "line 1
line 2"
check_contains "error: message" "$out" "stdin:1: oops"
check_contains "error: traceback" "$out" "stack traceback:"
check_contains "syntax error" "$out" "stdin:1: '=' expected near 'is'"
check_contains "statement returning a value" "$out" "
true
"
check_contains "app from the factory" "$out" '"hi there"'
check_contains "context from the Baseplate" "$out" '"hi there"
"hi there"'
check_contains "the context's server span is 'shell'" "$out" '"shell"'
check_contains "[shell] setup adds to the environment" "$out" "
3
"
check_contains "inputs wait on the loop" "$out" '"slept"'
check_contains "end of input: exit 0" "$out" "rc=0"
case "$out" in *">>>"*) fail "no prompts when stdin is not a terminal" "$out" ;; *) pass "no prompts when stdin is not a terminal" ;; esac

# Coroutines are served while the shell waits for the next line: the next
# line is sent only once the background coroutine has written.
: > "$TMP/bg.out"
(printf '%s\n' 'baseplate.spawn(function() baseplate.sleep(0.1) io.stderr:write("background done\n") end)'; \
  for _ in $(seq 1 200); do grep -q "background done" "$TMP/bg.out" && break; sleep 0.05; done; \
  printf '"next"\n') | (cd "$TMP" && timeout 20 "$BIN/baseplate-shell" s.ini >> "$TMP/bg.out" 2>&1)
check_contains "the loop runs while waiting for input" "$(cat "$TMP/bg.out")" 'background done
"next"'

# `baseplate` is loaded without a [shell] setup; complete() is what Tab asks.
printf '[app:main]\nfactory = shellapp:make_app\ngreeting = x\n' > "$TMP/plain.ini"
out=$(printf '%s\n' 'type(baseplate.sleep)' \
  'require("baseplate.shell").complete("context.")' \
  'require("baseplate.shell").complete("context.span:fin")' \
  'require("baseplate.shell").complete("baseplate.Base")' \
  'require("baseplate.shell").complete("pai")' | shell plain.ini)
check_contains "baseplate is loaded without a setup" "$out" '"function"'
check_contains "the banner lists baseplate" "$out" "  baseplate    The baseplate module"
check_contains "complete: a context's attributes (not _bp)" "$out" '"context.greeting\ncontext.span"'
check_contains "complete: methods after ':'" "$out" '"context.span:finish("'
check_contains "complete: a module's fields" "$out" '"baseplate.Baseplate("'
check_contains "complete: globals" "$out" '"pairs("'

# Log lines carry the shell span's trace ID.
printf '[app:main]\nfactory = shellapp:make_app\ngreeting = x\n[logging]\nformat = json\n' > "$TMP/j.ini"
out=$(printf '%s\n' 'require("baseplate.log").get_logger("t"):info("hello")' 'context.span.trace_id' | shell j.ini)
trace=$(printf '%s\n' "$out" | grep '^"[0-9]*"$' | tr -d '"')
check_contains "log lines carry the shell's trace ID" "$out" "\"message\": \"hello\", \"level\": \"INFO\", \"name\": \"t\", \"process\": "
case "$out" in *"\"traceID\": \"$trace\""*) [ -n "$trace" ] && pass "trace ID is the span's" ;; *) fail "trace ID is the span's" "$out" ;; esac

# A regular file as stdin.
printf '"from a file"\n' > "$TMP/in.txt"
check_contains "stdin from a file" "$(cd "$TMP" && "$BIN/baseplate-shell" s.ini < in.txt 2>&1)" '"from a file"'

# SIGINT abandons the running input and the shell goes on; SIGTERM ends it.
: > "$TMP/int.out"
(printf '%s\n' 'io.stderr:write("started\n"); baseplate.sleep(10); print("not abandoned")'; \
  for _ in $(seq 1 200); do grep -q "interrupted" "$TMP/int.out" && break; sleep 0.05; done; \
  printf '"still here"\n') \
  | (cd "$TMP" && exec "$BIN/baseplate-shell" s.ini >> "$TMP/int.out" 2>&1) &
pipeline=$!
for _ in $(seq 1 200); do grep -q "started" "$TMP/int.out" && break; sleep 0.05; done
kill -INT "$(pgrep -n -f "baseplate-shell s.ini")"
wait "$pipeline"
out=$(cat "$TMP/int.out")
check_contains "SIGINT: the input is abandoned" "$out" "interrupted"
check_contains "SIGINT: the shell goes on" "$out" '"still here"'
case "$out" in *"not abandoned"*) fail "SIGINT: the rest of the input does not run" "$out" ;; *) pass "SIGINT: the rest of the input does not run" ;; esac

(sleep 10 | (cd "$TMP" && "$BIN/baseplate-shell" s.ini > "$TMP/term.out" 2>&1; echo "rc=$?" > "$TMP/term.rc")) &
for _ in $(seq 1 200); do grep -q "Available Objects" "$TMP/term.out" 2>/dev/null && break; sleep 0.05; done
kill -TERM "$(pgrep -n -f "baseplate-shell s.ini")"
for _ in $(seq 1 40); do [ -s "$TMP/term.rc" ] && break; sleep 0.05; done
check_eq "SIGTERM at the prompt ends the shell (128 + 15)" "$(cat "$TMP/term.rc")" "rc=143"

# --- start-up errors -------------------------------------------------------------------------
out=$(shell)
check_contains "no config file: usage" "$out" "usage: baseplate-shell [-h] [--debug] [--app-name NAME] [--version]
                       config_file"
check_contains "no config file: argparse error" "$out" "baseplate-shell: error: the following arguments are required: config_file"
check_contains "no config file: exit 2" "$out" "rc=2"
check_eq "missing config file" "$(shell missing.ini < /dev/null)" \
  "baseplate-shell: error: missing.ini: cannot read config file: No such file or directory
rc=1"
check_eq "missing section" "$(shell --app-name nope s.ini < /dev/null)" "baseplate-shell: error: s.ini: no section [app:nope]
rc=1"
printf '[app:main]\nfactory = shellapp:make_app\n[shell]\nsetup = shellapp:nope\n' > "$TMP/bad.ini"
check_eq "setup that does not exist" "$(shell bad.ini < /dev/null)" \
  "baseplate-shell: error: bad.ini: [shell] setup: module 'shellapp' has no callable 'nope'
rc=1"
printf 'local M = {}\nfunction M.setup() error("no models today") end\nreturn M\n' > "$TMP/badsetup.lua"
printf '[app:main]\nfactory = shellapp:make_app\n[tshell]\nsetup = badsetup:setup\n' > "$TMP/bad.ini"
check_eq "[tshell] setup that fails" "$(shell bad.ini < /dev/null)" \
  "baseplate-shell: error: bad.ini: [tshell] setup: badsetup:setup failed: ./badsetup.lua:2: no models today
rc=1"
printf '[app:main]\nsetting = 1\n' > "$TMP/bad.ini"
check_eq "no factory" "$(shell bad.ini < /dev/null)" "baseplate-shell: error: bad.ini: [app:main] factory: no value specified
rc=1"

# --- a terminal: line editing, history, Ctrl-C, Ctrl-D ----------------------------------------
cat > "$TMP/drive.py" <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
def read_for(t):
    global out
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return
            if not d:
                return
            out += d
def wait_for(text, t=5, start=0):
    # only output from `start` on counts: a prompt seen before is not the next one
    end = time.time() + t
    while time.time() < end and text.encode() not in out[start:]:
        read_for(0.05)
def send(s, then=None):
    start = len(out)
    os.write(fd, s.encode())
    if then: wait_for(then, start=start)
    else: read_for(0.3)
wait_for(">>> ")
send("1 + 2\r", "3\r\n>>> ")
send("for i = 1, 2 do\r", "... ")
send("print(i * 10)\r", "... ")
send("end\r", "20\r\n>>> ")
send('"ab"\x1b[DX\r', '"abX"\r\n')        # left arrow, insert X
send("baseplate.sleep(10)\r")
send("\x03", "interrupted")              # Ctrl-C while the input waits
send('"after"\r', '"after"\r\n>>> ')
send("half typed")
send("\x03")                               # Ctrl-C at the prompt
send('"fresh"\r', '"fresh"\r\n>>> ')
send("x = 4\r")
send("\x1b[A\x1b[A\r", '"fresh"\r\n>>> ') # up arrow twice: '"fresh"' again
send('require("baseplate.log").get_logger("tty.test"):info("on a terminal")\r', "on a terminal\r\n>>> ")
send("context.gre\t")                      # Tab: a context attribute
send("\r", '"hi there"\r\n>>> ')
send("mode\t")                             # Tab: a name of the environment
send(".us\t")                              # Tab: a field of a table
send("\r", '"User"\r\n>>> ')
send("string.up\t")                        # Tab: a function gets "("
send("'tab')\r", '"TAB"\r\n>>> ')
send("context.\t\t")                       # Tab Tab: the list
send("\x03")
send("\x04")                               # Ctrl-D
read_for(1)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace").replace("\r\n", "\n"))
print("\nexit %d" % os.waitstatus_to_exitcode(status))
PY
out=$(cd "$TMP" && BASEPLATE_SHELL_HISTORY="$TMP/history" timeout 30 python3 drive.py "$BIN/baseplate-shell" s.ini 2>&1)
check_contains "tty: banner" "$out" "Available Objects:"
check_contains "tty: prompt and result" "$out" ">>> 1 + 2
3
>>> "
check_contains "tty: continuation prompt" "$out" ">>> for i = 1, 2 do
... print(i * 10)
... end
10
20"
check_contains "tty: line editing (left arrow, insert)" "$out" '
"abX"'
check_contains "tty: Ctrl-C abandons a waiting input" "$out" "interrupted
>>> \"after\"
\"after\""
check_contains "tty: Ctrl-C drops what was typed" "$out" ">>> half typed
>>> \"fresh\""
check_contains "tty: history (up arrow)" "$out" "x = 4"
check_eq "tty: history recalled the earlier line" "$(printf '%s\n' "$out" | grep -c '^"fresh"$')" 2
check_contains "tty: Tab completes context.gre to context.greeting" "$out" '"hi there"'
check_contains "tty: Tab completes names and fields (mode, .us)" "$out" '"User"'
check_contains "tty: Tab completes string.up to string.upper(" "$out" '"TAB"'
check_contains "tty: Tab Tab lists the context's attributes" "$out" "context.greeting context.span"
if printf '%s\n' "$out" | grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{3} INFO     \[tty\.test\] on a terminal$'; then
  pass "tty: log lines carry the time, the level and the logger"
else
  fail "tty: log lines carry the time, the level and the logger" "$(printf '%s\n' "$out" | grep 'on a terminal')"
fi
check_contains "tty: Ctrl-D exits 0" "$out" "exit 0"
check_contains "tty: history file written" "$(cat "$TMP/history" 2>/dev/null)" "x\\040=\\0404"
finish
