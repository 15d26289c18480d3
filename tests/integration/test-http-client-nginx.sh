# The HTTP client (baseplate.clients.http) against nginx: a private nginx
# (Debian's /usr/sbin/nginx) on loopback, on its own ports, with its own
# prefix under the test's temporary directory, stopped at the end. One
# plain HTTP/1.1 listener and one TLS listener offering HTTP/2 (a
# self-signed certificate made here with openssl, trusted through the
# client's ca_file). The client side is tests/integration/apps/httpnginxapp.lua
# under baseplate-script.
. "$(dirname "$0")/lib.sh"

NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] && [ -x "$NGINX" ] || { fail "nginx is installed (scripts/install-deps)"; finish; }
command -v openssl >/dev/null || { fail "openssl is installed"; finish; }

NGX=$TMP/nginx
mkdir -p "$NGX/logs" "$NGX/tmp" "$NGX/www"
# nginx's worker runs as nobody when the test runs as root: it reads www/.
chmod 755 "$TMP" "$NGX" "$NGX/www"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$NGX/key.pem" -out "$NGX/cert.pem" >"$NGX/openssl.log" 2>&1 || { fail "a certificate is made" "$(cat "$NGX/openssl.log")"; finish; }
# A 200 MB body (sparse: no disk used) to stream, and a small one.
truncate -s 200M "$NGX/www/big.bin"
head -c 300000 /dev/urandom > "$NGX/www/small.bin"

NGINX_PID=
stop_nginx() {
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -QUIT "$NGINX_PID"
    for _ in $(seq 1 100); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
  fi
  NGINX_PID=
}
trap 'stop_nginx; cleanup' EXIT

start_nginx() {
  for _ in 1 2 3 4 5 6 7 8; do
    P1=$(random_port)
    P2=$((P1 + 1))
    cat > "$NGX/nginx.conf" <<NGXCONF
worker_processes 1;
daemon off;
error_log $NGX/logs/error.log;
pid $NGX/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $NGX/tmp/body;
  proxy_temp_path $NGX/tmp/proxy;
  fastcgi_temp_path $NGX/tmp/fastcgi;
  uwsgi_temp_path $NGX/tmp/uwsgi;
  scgi_temp_path $NGX/tmp/scgi;
  keepalive_requests 10000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:$P1;
    listen 127.0.0.1:$P2 ssl http2;
    ssl_certificate $NGX/cert.pem;
    ssl_certificate_key $NGX/key.pem;
    root $NGX/www;
    default_type application/octet-stream;
    # which connection, its how-manieth request, over which protocol
    add_header X-Connection \$connection always;
    add_header X-Connection-Requests \$connection_requests always;
    add_header X-Protocol \$server_protocol always;
    location = /hello {
      add_header X-Connection \$connection always;
      add_header X-Connection-Requests \$connection_requests always;
      add_header X-Protocol \$server_protocol always;
      add_header X-Method \$request_method always;
      add_header X-Got-Custom \$http_x_custom always;
      add_header X-Query \$args always;
      default_type text/plain;
      return 200 "hello from nginx";
    }
    # the request body, read by nginx (it proxies it on), echoed in a header
    location = /post {
      proxy_pass http://127.0.0.1:$P1/sink;
      add_header X-Method \$request_method always;
      add_header X-Request-Body \$request_body always;
      add_header X-Content-Type \$content_type always;
    }
    location = /sink { return 200 "stored"; }
    location = /status/404 { return 404 "not here"; }
    location = /status/503 { return 503 "busy"; }
    location = /redirect { return 302 /hello?from=redirect; }
    location = /redirect-away { return 301 http://127.0.0.2:$P1/hello; }
  }
}
NGXCONF
    : > "$NGX/logs/error.log"
    "$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" >"$NGX/nginx.out" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$P1") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$P2") 2>/dev/null; then
        return 0
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop_nginx
    grep -q "in use" "$NGX/logs/error.log" "$NGX/nginx.out" || { cat "$NGX/logs/error.log" "$NGX/nginx.out"; return 1; }
  done
  return 1
}
start_nginx || { fail "nginx starts"; finish; }
pass "nginx starts (127.0.0.1:$P1 HTTP/1.1, :$P2 TLS + HTTP/2)"

cp "$APPS/httpnginxapp.lua" "$TMP/"
cat > "$TMP/client.ini" <<INI
[app:main]
api.timeout = 60 seconds
tls.timeout = 20 seconds
tls.ca_file = $NGX/cert.pem
web.filter.ip_allowlist = 127.0.0.1/32
web.filter.port_allowlist = $P1
INI
# A name for 127.0.0.1 that libcurl's resolver looks up (it answers
# "localhost" itself); localhost when /etc/hosts has none.
NAME=$(awk '$1 ~ /^127\./ { for (i = 2; i <= NF; i++) if ($i !~ /localhost/) { print $i; exit } }' /etc/hosts)
out=$(cd "$TMP" && timeout 100 "$BIN/baseplate-script" client.ini httpnginxapp:run "$P1" "$P2" "${NAME:-localhost}" 2>&1; echo "rc=$?")
echo "$out" | grep -v '^ok ' | head -40
oks=$(printf '%s\n' "$out" | grep -c '^ok ')
check_eq "no client check failed" "$(printf '%s\n' "$out" | grep '^FAILED' | head -5)" ""
check_contains "the client checks ran to the end" "$out" "done in"
check_contains "script exits 0" "$out" "rc=0"
want=$(grep -c '^ *check("' "$APPS/httpnginxapp.lua")
[ "$oks" -ge "$want" ] && pass "all $want client checks passed ($oks)" || fail "all $want client checks passed" "$oks"

kill -0 "$NGINX_PID" 2>/dev/null && pass "nginx still up" || fail "nginx still up"
stop_nginx
finish
