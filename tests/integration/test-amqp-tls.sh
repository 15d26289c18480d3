#!/usr/bin/env bash
# AMQP over TLS (amqps) against the real RabbitMQ of tests/services.sh, whose
# TLS listener has a certificate for localhost signed by the fixture's test
# CA: the consumer factory and the producer connect with the CA (and a
# client certificate), messages small and large go through under load and
# each is handled once; the broker's certificate is checked (another CA, an
# address the certificate does not name, the system's CAs: each a clear
# error), and those checks can be turned off.
. "$(dirname "$0")/lib.sh"
: "${BP_TEST_AMQPS_PORT:?set by ctest}" "${BP_TEST_AMQP_TLS_DIR:?set by ctest}"
T=$BP_TEST_AMQP_TLS_DIR
cp "$APPS/amqpapp.lua" "$TMP/"
OUT=$TMP/out.txt
Q=bp.tls.q$$
EX=bp.tls.ex$$

# consumer "amqp lines": a consumer and the producer of amqpapp over amqps
consumer() {
  : > "$OUT"
  printf '[app:main]\nfactory = amqpapp:make_consumer\namqp.hostname = amqps://guest:guest@localhost:%s\namqp.exchange_name = %s\namqp.exchange_type = topic\namqp.queue_name = %s\namqp.routing_keys = bp.test\namqp.heartbeat = 2 seconds\namqp.connect_timeout = 5 seconds\ntest.out = %s\n%b\n[server:main]\nfactory = baseplate.server.queue_consumer\nmax_concurrency = 8\n' \
    "$BP_TEST_AMQPS_PORT" "$EX" "$Q" "$OUT" "$1" > "$TMP/c.ini"
  start_server "$TMP/c.ini" --debug
}
publish() { (cd "$TMP" && timeout 90 "$BIN/baseplate-script" c.ini amqpapp:publish "$@" 2>&1); }
handled() { grep -c '^handled' "$OUT"; }
wait_handled() { for _ in $(seq 1 $(($2 * 20))); do [ "$(handled)" -ge "$1" ] && return 0; sleep 0.05; done; return 1; }
unique() { grep '^handled' "$OUT" | awk '{print $2}' | sort -un | wc -l; }

# --- the CA and a client certificate: consume and publish over TLS --------------------------------
consumer "amqp.ssl_ca_certs = $T/ca.pem\namqp.ssl_certfile = $T/client.pem\namqp.ssl_keyfile = $T/client.key\ntest.delay = 0.002" ||
  { fail "the consumer starts over TLS"; finish; }
out=$(publish 1000 1 8)
check_contains "the producer published 1000 over TLS, each confirmed" "$out" "published 1000"
wait_handled 1000 60
check_eq "the consumer handled the 1000 over TLS, each once" "$(handled) $(unique)" "1000 1000"
# large bodies: 40 of 200 kB (each many TLS records, several frames)
out=$(publish 40 2001 4 200000)
check_contains "40 large messages published over TLS" "$out" "published 40"
wait_handled 1040 60
check_eq "... and handled" "$(unique)" 1040
conns=$("$SOURCE_DIR/tests/services.sh" amqp-ctl "$BUILD_DIR" list_connections ssl ssl_protocol peer_cert_subject 2>&1)
check_contains "the broker sees the consumer's connection as TLS, with the client certificate" \
  "$(echo "$conns" | grep true)" "CN=baseplate test client"
check_eq "... and no connection without TLS" "$(echo "$conns" | grep -c false)" 0
# the broker restarts: the consumer connects again, over TLS
"$SOURCE_DIR/tests/services.sh" amqp-restart "$BUILD_DIR"
wait_for_log "consuming again on a new connection" 30
check_contains "after a broker restart the consumer reconnects over TLS" "$(cat "$LOG")" \
  "consuming again on a new connection"
out=$(publish 20 3001 2)
check_contains "... and publishing goes on" "$out" "published 20"
wait_handled 1060 30
check_eq "... and consuming" "$(unique)" 1060
stop_server TERM
check_eq "SIGTERM: exit 0" "$SERVER_RC" 0

# --- the broker's certificate is checked ----------------------------------------------------------
connect() { # HOSTNAME "amqp lines": connect and publish once with these settings; prints the outcome
  printf '[app:main]\namqp.hostname = %s\namqp.connect_timeout = 5 seconds\n%b\n' "$1" "$2" > "$TMP/p.ini"
  (cd "$TMP" && timeout 30 "$BIN/baseplate-script" p.ini amqpapp:publish_raw '{"n": 1}' 2>&1)
}
out=$(connect "amqps://localhost:$BP_TEST_AMQPS_PORT" "amqp.ssl_ca_certs = $T/other-ca.pem")
check_contains "another CA: a clear error" "$out" \
  "cannot connect: TLS handshake failed: certificate verify failed: self-signed certificate in certificate chain"
out=$(connect "amqps://localhost:$BP_TEST_AMQPS_PORT" "")
check_contains "the system's CAs (the default) do not know the test CA" "$out" "certificate verify failed"
out=$(connect "amqps://127.0.0.1:$BP_TEST_AMQPS_PORT" "amqp.ssl_ca_certs = $T/ca.pem")
check_contains "an address the certificate does not name: refused" "$out" "certificate verify failed: IP address mismatch"
out=$(connect "amqps://127.0.0.1:$BP_TEST_AMQPS_PORT" "amqp.ssl_ca_certs = $T/ca.pem\namqp.ssl_check_hostname = false")
check_contains "... unless ssl_check_hostname = false" "$out" "published raw"
out=$(connect "amqps://localhost:$BP_TEST_AMQPS_PORT" "amqp.ssl_cert_reqs = none")
check_contains "ssl_cert_reqs = none: no check at all" "$out" "published raw"
out=$(connect "amqp://localhost:$BP_TEST_AMQPS_PORT" "amqp.ssl = true\namqp.ssl_ca_certs = $T/ca.pem")
check_contains "ssl = true turns TLS on for an amqp:// hostname" "$out" "published raw"
out=$(connect "amqps://localhost:$BP_TEST_AMQPS_PORT" "amqp.ssl_ca_certs = $T/ca.pem\namqp.ssl_certfile = $T/other-client.pem\namqp.ssl_keyfile = $T/other-client.key")
# (TLS 1.3: the broker checks the client's certificate after the
# handshake; its alert is read at the login, or lost when the socket
# closed first)
case "$out" in
  *"login failed: a SSL error occurred (TLS: tlsv1 alert unknown ca)"* | *"login failed: a SSL error occurred"*)
    pass "a client certificate the broker does not trust: refused at the login" ;;
  *) fail "a client certificate the broker does not trust: refused at the login" "$out" ;;
esac
out=$(connect "amqps://localhost:$BP_TEST_AMQP_PORT" "amqp.ssl_ca_certs = $T/ca.pem")
check_contains "TLS to the plain port: a clear error" "$out" "TLS handshake failed: wrong version number"
out=$(connect "amqps://localhost:$BP_TEST_AMQPS_PORT" "amqp.ssl_ca_certs = $T/missing.pem")
check_contains "a CA file that is not there: the key named at start-up" "$out" "amqp.ssl_ca_certs: cannot read"
out=$(connect "amqp://localhost:$BP_TEST_AMQP_PORT" "amqp.ssl_ca_certs = $T/ca.pem")
check_contains "TLS keys without TLS: the key named" "$out" "amqp.ssl_ca_certs: TLS is off"
finish
