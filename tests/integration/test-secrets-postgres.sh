# A service whose PostgreSQL password comes from the secrets store, end to
# end: baseplate-serve with an INI file that names the secrets file
# (secrets.path) and the credential secret (db.credentials_secret), the real
# PostgreSQL of tests/services.sh (the role bp_secrets logs in only with its
# password), and the secrets file replaced as the fetcher does (a temporary
# file renamed over it) while the service runs. The password is in neither
# the INI file nor any log line.
. "$(dirname "$0")/lib.sh"

PG_URL=${BP_TEST_PG_URL:?set by ctest}
NOUSER_URL=$(printf '%s' "$PG_URL" | sed -E 's|//[^@/]*@|//|')
cp "$APPS/secretsapp.lua" "$TMP/"
SECRETS=$TMP/secrets.json

write_secrets() { # PG_PASSWORD KEY
  cat > "$SECRETS.tmp" <<JSON
{"secrets": {
  "secret/app/db": {"type": "credential", "username": "bp_secrets", "password": "$1"},
  "secret/app/key": {"type": "versioned", "current": "$2", "encoding": "base64"}
}, "vault": {"url": "https://vault.local:8200/", "token": "t0ken-never-shown"}}
JSON
  mv "$SECRETS.tmp" "$SECRETS"
}
psql_admin() { psql "$PG_URL" -qAtc "$1"; }
# the fixture's password back, whatever happens
trap 'cleanup; psql_admin "ALTER ROLE bp_secrets PASSWORD '"'"'bp-secrets-pw-1'"'"'" >/dev/null 2>&1' EXIT

write_secrets bp-secrets-pw-1 a2V5LW9uZQ== # key-one
printf '[app:main]\nfactory = secretsapp:make_app\nsecrets.path = %s\ndb.url = %s\ndb.credentials_secret = secret/app/db\ndb.pool_size = 1\ndb.pool_recycle = 1 second\n[server:main]\nfactory = baseplate.server.http\n' \
  "$SECRETS" "$NOUSER_URL" > "$TMP/app.ini"
start_server "$TMP/app.ini" || { fail "server starts"; finish; }

check_eq "logs in as the secret's user" "$(curl -s --max-time 20 "$(url /whoami)")" '{"user":"bp_secrets"}'
check_eq "a versioned secret from the file" "$(curl -s --max-time 20 "$(url /key)")" '{"current":"key-one"}'

# Rotation: the password changes on the server and in the file (renamed
# over the old one); a new connection (the pool recycles after a second)
# logs in with the new one, and the key changes without a restart.
psql_admin "ALTER ROLE bp_secrets PASSWORD 'bp-secrets-pw-2'"
write_secrets bp-secrets-pw-2 a2V5LXR3bw== # key-two
ok=
for _ in $(seq 1 40); do
  [ "$(curl -s --max-time 20 "$(url /key)")" = '{"current":"key-two"}' ] && { ok=1; break; }
  sleep 0.1
done
[ -n "$ok" ] && pass "the replaced file is read while serving" || fail "the replaced file is read while serving"
sleep 1.2
check_eq "a new connection uses the rotated password" "$(curl -s --max-time 20 "$(url /whoami)")" \
  '{"user":"bp_secrets"}'

# A wrong password: the error says so, without the password.
psql_admin "ALTER ROLE bp_secrets PASSWORD 'bp-secrets-pw-3'"
sleep 1.2
out=$(curl -s --max-time 20 "$(url /error)")
check_contains "a wrong password is a ConnectionError" "$out" '"class":"ConnectionError"'
check_contains "naming the failure" "$out" 'password authentication failed'
case "$out" in *bp-secrets-pw*) fail "the error shows no password" "$out" ;; *) pass "the error shows no password" ;; esac
psql_admin "ALTER ROLE bp_secrets PASSWORD 'bp-secrets-pw-1'"

stop_server
if grep -q 'bp-secrets-pw\|t0ken-never-shown' "$LOG"; then
  fail "no log line shows a secret" "$(grep 'bp-secrets-pw\|t0ken' "$LOG")"
else
  pass "no log line shows a secret"
fi
if grep -q 'bp-secrets-pw' "$TMP/app.ini"; then fail "the INI file holds no password"; else pass "the INI file holds no password"; fi
finish
