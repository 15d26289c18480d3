# Live data end to end, against the real ZooKeeper of tests/zookeeper.sh:
# baseplate-live-data-watcher keeps files in step with nodes (created,
# changed, deleted; owner, group and mode; never half a file), across a
# ZooKeeper restart and an expired session, with digest credentials from
# the secrets store; a service reads the file through
# baseplate.lib.file_watcher and sees a node's change within a second; and
# baseplate-live-data-writer shows a diff, changes nothing on --dry-run,
# and asks on a terminal.
. "$(dirname "$0")/lib.sh"

HOSTS=${BP_TEST_ZOOKEEPER_HOSTS:?set by ctest}
ZKSH="$SOURCE_DIR/tests/zookeeper.sh"
W=$BIN/baseplate-live-data-writer
OUT=$TMP/out
ROOT=/bp-test-$$
WATCHER_PID=
WATCHER2_PID=
trap 'kill -CONT $WATCHER_PID 2>/dev/null; kill $WATCHER_PID $WATCHER2_PID 2>/dev/null; cleanup' EXIT

cat > "$TMP/zk.ini" <<INI
[live-data]
zookeeper.hosts = $HOSTS
zookeeper.timeout = 2 seconds

[app:main]
zookeeper.hosts = $HOSTS
INI
cat > "$TMP/watcher.ini" <<INI
[live-data]
zookeeper.hosts = $HOSTS
zookeeper.timeout = 2 seconds

nodes.a.source = $ROOT/a
nodes.a.dest = $OUT/a.txt
nodes.a.mode = 0644

nodes.b.source = $ROOT/b
nodes.b.dest = $OUT/sub/dir/b.txt
nodes.b.owner = nobody
nodes.b.group = nogroup
nodes.b.mode = 0640

nodes.big.source = $ROOT/big
nodes.big.dest = $OUT/big.txt
INI

# set_node PATH CONTENT: create or replace the node's data
set_node() {
  printf '%s' "$2" > "$TMP/node.in"
  "$W" --yes --create "$TMP/zk.ini" "$TMP/node.in" "$1" >"$TMP/writer.out" 2>&1
}
zk() { (cd "$SOURCE_DIR/tests/integration/tools" && "$BIN/baseplate-script" "$TMP/zk.ini" zk_tool:main "$@") 2>/dev/null; }
# wait_file FILE CONTENT [SECONDS]: until FILE holds CONTENT
wait_file() {
  local n=$(( ${3:-10} * 50 ))
  for _ in $(seq 1 "$n"); do [ -f "$1" ] && [ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0; sleep 0.02; done
  return 1
}
wait_gone() {
  for _ in $(seq 1 500); do [ -e "$1" ] || return 0; sleep 0.02; done
  return 1
}
wait_in() { # FILE TEXT [SECONDS]
  local n=$(( ${3:-10} * 20 ))
  for _ in $(seq 1 "$n"); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

set_node "$ROOT" "" || { fail "the writer creates the test's root node" "$(cat "$TMP/writer.out")"; finish; }
set_node "$ROOT-acl" ""

"$BIN/baseplate-live-data-watcher" "$TMP/watcher.ini" >"$TMP/watcher.log" 2>&1 &
WATCHER_PID=$!
wait_in "$TMP/watcher.log" "connected to ZooKeeper" 10 && pass "the watcher connects" \
  || fail "the watcher connects" "$(cat "$TMP/watcher.log")"

# --- create, change, delete ------------------------------------------------------
sleep 0.3
[ -e "$OUT/a.txt" ] && fail "no file while the node does not exist" || pass "no file while the node does not exist"
set_node "$ROOT/a" "one"
wait_file "$OUT/a.txt" "one" && pass "a created node reaches its file" \
  || fail "a created node reaches its file" "$(cat "$OUT/a.txt" 2>&1)"
check_eq "the file's mode is nodes.a.mode" "$(stat -c %a "$OUT/a.txt" 2>&1)" "644"
set_node "$ROOT/a" "two"
wait_file "$OUT/a.txt" "two" && pass "a changed node reaches its file" \
  || fail "a changed node reaches its file" "$(cat "$OUT/a.txt" 2>&1)"
zk delete "$ROOT/a"
wait_gone "$OUT/a.txt" && pass "a deleted node removes its file" || fail "a deleted node removes its file"
set_node "$ROOT/a" "three"
wait_file "$OUT/a.txt" "three" && pass "the node created again brings the file back" \
  || fail "the node created again brings the file back"
ls -a "$OUT" | grep -q '\.tmp' && fail "no temporary file is left" "$(ls -a "$OUT")" \
  || pass "no temporary file is left"

# --- owner, group, mode, and a directory that did not exist ----------------------
set_node "$ROOT/b" "bee"
if wait_file "$OUT/sub/dir/b.txt" "bee"; then
  pass "the destination's directories are made"
  if [ "$(id -u)" = 0 ]; then
    check_eq "owner, group and mode applied" "$(stat -c '%U %G %a' "$OUT/sub/dir/b.txt")" "nobody nogroup 640"
  else
    check_eq "mode applied (not root: owner and group unchecked)" "$(stat -c '%a' "$OUT/sub/dir/b.txt")" "640"
  fi
else
  fail "the destination's directories are made" "$(tail -5 "$TMP/watcher.log")"
fi
check_eq "the default mode is 0400" "$(set_node "$ROOT/big" "x"; wait_file "$OUT/big.txt" x; stat -c %a "$OUT/big.txt")" "400"

# --- a reader never sees half a file ----------------------------------------------
# Two contents of different sizes (900 kB of A, 700 kB of B), written in
# turn while a reader reads the file as fast as it can: each read is one of
# them, whole.
python3 - "$TMP/A" "$TMP/B" <<'PY'
import sys
open(sys.argv[1], "w").write("A" * 900000)
open(sys.argv[2], "w").write("B" * 700000)
PY
"$W" --yes "$TMP/zk.ini" "$TMP/A" "$ROOT/big" >/dev/null 2>&1
wait_file "$OUT/big.txt" "$(cat "$TMP/A")" 10
python3 - "$OUT/big.txt" "$TMP/reader.out" <<'PY' &
import sys, time
path, out = sys.argv[1], sys.argv[2]
good = {"A": 900000, "B": 700000}
reads = bad = 0
seen = set()
end = time.time() + 6
while time.time() < end:
    try:
        data = open(path, "rb").read().decode()
    except FileNotFoundError:
        bad += 1
        continue
    reads += 1
    kind = data[:1]
    if kind not in good or len(data) != good[kind] or data.count(kind) != len(data):
        bad += 1
    else:
        seen.add(kind)
open(out, "w").write("%d %d %s" % (reads, bad, "".join(sorted(seen))))
PY
READER=$!
for i in 1 2 3 4 5 6 7 8; do
  "$W" --yes "$TMP/zk.ini" "$TMP/B" "$ROOT/big" >/dev/null 2>&1
  sleep 0.2
  "$W" --yes "$TMP/zk.ini" "$TMP/A" "$ROOT/big" >/dev/null 2>&1
  sleep 0.2
done
wait "$READER"
read -r reads bad seen < "$TMP/reader.out"
check_eq "no read saw a partial or missing file ($reads reads)" "$bad" "0"
check_eq "the reader saw both contents" "$seen" "AB"
[ "$reads" -gt 20 ] && pass "the reader read while the file was replaced" || fail "the reader read" "$reads"

# --- ZooKeeper restarted ----------------------------------------------------------
bash "$ZKSH" restart "$BUILD_DIR" 1 >/dev/null 2>&1 || fail "ZooKeeper restarts"
wait_in "$TMP/watcher.log" "lost the connection to ZooKeeper" 10 && pass "the watcher saw the connection go" \
  || fail "the watcher saw the connection go" "$(tail -5 "$TMP/watcher.log")"
set_node "$ROOT/a" "after-restart" || fail "the writer writes after the restart" "$(cat "$TMP/writer.out")"
wait_file "$OUT/a.txt" "after-restart" 15 && pass "a change after a ZooKeeper restart reaches the file" \
  || fail "a change after a ZooKeeper restart reaches the file" "$(cat "$OUT/a.txt")" "$(tail -5 "$TMP/watcher.log")"

# --- an expired session -----------------------------------------------------------
# The watcher is frozen longer than its session (2 s): ZooKeeper expires
# the session, and a change made meanwhile fired no watch. Thawed, the
# watcher starts a new session, watches again and reads the changed node.
kill -STOP "$WATCHER_PID"
sleep 1
set_node "$ROOT/a" "while-expired"
zk delete "$ROOT/b"
sleep 4
kill -CONT "$WATCHER_PID"
wait_in "$TMP/watcher.log" "expired; starting a new one" 15 && pass "the watcher saw its session expire" \
  || fail "the watcher saw its session expire" "$(tail -5 "$TMP/watcher.log")"
wait_file "$OUT/a.txt" "while-expired" 15 && pass "a change made while the session expired reaches the file" \
  || fail "a change made while the session expired reaches the file" "$(cat "$OUT/a.txt")"
wait_gone "$OUT/sub/dir/b.txt" && pass "a node deleted while the session expired removes the file" \
  || fail "a node deleted while the session expired removes the file"
set_node "$ROOT/a" "new-session"
wait_file "$OUT/a.txt" "new-session" 10 && pass "the new session's watches fire" \
  || fail "the new session's watches fire"

# --- digest credentials from the secrets store, an ACL'd node ---------------------
cat > "$TMP/secrets.json" <<'JSON'
{"secrets": {"secret/zk/creds": {"type": "simple", "value": "bp-user:bp-zk-pass-77"}}}
JSON
cat > "$TMP/auth.ini" <<INI
[live-data]
zookeeper.hosts = $HOSTS
zookeeper.timeout = 2 seconds
zookeeper.credentials = secret/zk/creds
secrets.path = $TMP/secrets.json

nodes.acl.source = $ROOT-acl/node
nodes.acl.dest = $OUT/acl.txt
INI
printf 'secret data' > "$TMP/acl.in"
"$W" --yes --create "$TMP/auth.ini" "$TMP/acl.in" "$ROOT-acl/node" >"$TMP/writer.out" 2>&1
check_eq "the writer creates a node only its credentials may read" "$(zk get "$ROOT-acl/node")" "NoAuthError"
"$BIN/baseplate-live-data-watcher" "$TMP/auth.ini" >"$TMP/watcher2.log" 2>&1 &
WATCHER2_PID=$!
wait_file "$OUT/acl.txt" "secret data" 10 && pass "the watcher reads it with the secret's credentials" \
  || fail "the watcher reads it with the secret's credentials" "$(cat "$TMP/watcher2.log")"
kill "$WATCHER2_PID"; wait "$WATCHER2_PID" 2>/dev/null; WATCHER2_PID=
# Without the credentials: refused, logged, no file.
sed -e '/zookeeper.credentials/d' -e 's|acl.txt|acl-without-credentials.txt|' "$TMP/auth.ini" > "$TMP/noauth.ini"
"$BIN/baseplate-live-data-watcher" "$TMP/noauth.ini" >"$TMP/watcher3.log" 2>&1 &
WATCHER2_PID=$!
wait_in "$TMP/watcher3.log" "cannot read $ROOT-acl/node: not authenticated" 10 \
  && pass "without credentials the refusal is logged" \
  || fail "without credentials the refusal is logged" "$(cat "$TMP/watcher3.log")"
[ -e "$OUT/acl-without-credentials.txt" ] && fail "without credentials no file is written" \
  || pass "without credentials no file is written"
kill "$WATCHER2_PID"; wait "$WATCHER2_PID" 2>/dev/null; WATCHER2_PID=
set_node "$ROOT/a" "poke"
wait_file "$OUT/a.txt" "poke" 10
cat "$TMP"/watcher*.log "$TMP/writer.out" | grep -q "bp-zk-pass-77" && fail "the password is in no log" \
  || pass "the password is in no log"

# --- a service sees a node's change within a second -------------------------------
cp "$APPS/livedataapp.lua" "$TMP/"
printf '[app:main]\nfactory = livedataapp:make_app\nlive_data.path = %s\n[server:main]\nfactory = baseplate.server.http\n' \
  "$OUT/a.txt" > "$TMP/app.ini"
if start_server "$TMP/app.ini"; then
  check_eq "the service reads the file" "$(curl -s --max-time 5 "$(url /data)")" '{"data":"poke"}'
  t0=$(date +%s%N)
  set_node "$ROOT/a" "to-the-service"
  t1=$(date +%s%N)
  ok=
  for _ in $(seq 1 200); do
    [ "$(curl -s --max-time 5 "$(url /data)")" = '{"data":"to-the-service"}' ] && { ok=1; break; }
    sleep 0.01
  done
  t2=$(date +%s%N)
  ms=$(( (t2 - t1) / 1000000 ))
  echo "  (node written in $(( (t1 - t0) / 1000000 )) ms; seen by the service $ms ms later)"
  [ -n "$ok" ] && [ "$ms" -lt 1000 ] && pass "a node's change reaches the service within a second" \
    || fail "a node's change reaches the service within a second" "ok=$ok after $ms ms"
  stop_server
else
  fail "the service starts"
fi

# --- the writer --------------------------------------------------------------------
printf 'line 1\nline 2\nkey: old\nline 4\n' > "$TMP/old.txt"
printf 'line 1\nline 2\nkey: new\nline 4\n' > "$TMP/new.txt"
"$W" --yes --create "$TMP/zk.ini" "$TMP/old.txt" "$ROOT/w" >/dev/null 2>&1
v0=$(zk version "$ROOT/w")
out=$("$W" --dry-run "$TMP/zk.ini" "$TMP/new.txt" "$ROOT/w" 2>&1); rc=$?
check_eq "--dry-run exits 0" "$rc" "0"
check_contains "--dry-run shows the diff" "$out" $'@@ -1,4 +1,4 @@\n line 1\n line 2\n-key: old\n+key: new\n line 4'
check_contains "--dry-run says it writes nothing" "$out" "Dry run: not writing."
check_eq "--dry-run changes nothing" "$(zk get "$ROOT/w")" "$(cat "$TMP/old.txt")"
check_eq "--dry-run leaves the version" "$(zk version "$ROOT/w")" "$v0"
out=$("$W" --dry-run "$TMP/zk.ini" "$TMP/new.txt" "$ROOT/missing" 2>&1); rc=$?
check_eq "a missing node without --create fails" "$rc" "1"
check_contains "naming the reason" "$out" "Target node does not exist. Please create it with appropriate ACLs first."
check_eq "and creates nothing" "$(zk get "$ROOT/missing")" "NoNodeError"
# On a terminal the writer asks; "n" writes nothing, "y" writes.
out=$(echo n | script -qec "'$W' '$TMP/zk.ini' '$TMP/new.txt' '$ROOT/w'" /dev/null 2>&1)
check_contains "on a terminal it asks" "$out" "Write this to $ROOT/w? [y/N]"
check_contains "the diff comes before the question" "$out" "+key: new"
check_eq "answered no, nothing is written" "$(zk get "$ROOT/w")" "$(cat "$TMP/old.txt")"
out=$(echo y | script -qec "'$W' '$TMP/zk.ini' '$TMP/new.txt' '$ROOT/w'" /dev/null 2>&1)
check_contains "answered yes, it writes" "$out" "Wrote data to Zookeeper."
check_eq "the node holds the file" "$(zk get "$ROOT/w")" "$(cat "$TMP/new.txt")"
out=$("$W" "$TMP/zk.ini" "$TMP/new.txt" "$ROOT/w" </dev/null 2>&1)
check_contains "the same data is not written again" "$out" "No changes detected. Not writing."
printf '\377\376binary' > "$TMP/bin.dat"
out=$("$W" --yes "$TMP/zk.ini" "$TMP/bin.dat" "$ROOT/w" 2>&1)
check_contains "binary data: no diff" "$out" "Skipping diff, data appears to be binary."
check_contains "and it is written" "$out" "Wrote data to Zookeeper."

kill "$WATCHER_PID"; wait "$WATCHER_PID"; rc=$?; WATCHER_PID=
check_eq "SIGTERM stops the watcher cleanly" "$rc" "0"
finish
