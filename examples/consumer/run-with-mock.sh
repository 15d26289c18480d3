#!/usr/bin/env bash
# Runs the worker against librdkafka's mock cluster (no Kafka broker needed):
# starts tests/kafka-mock from the build tree, makes the topics, produces
# COUNT messages, and serves worker.ini until Ctrl-C.
#
#   examples/consumer/run-with-mock.sh [COUNT]      # after `make build`
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-$HERE/../../build}
TMP=$(mktemp -d /tmp/bp-consumer-example.XXXXXX)
mkfifo "$TMP/cmd"
"$BUILD/tests/kafka-mock" 3 "$TMP/boot" < "$TMP/cmd" > "$TMP/mock.out" 2> "$TMP/mock.err" &
MOCK=$!
exec 7> "$TMP/cmd"
trap 'exec 7>&-; kill $MOCK 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do [ -s "$TMP/boot" ] && break; sleep 0.05; done
echo "topic new_links 4" >&7
echo "topic link_scores 4" >&7
echo "produce new_links ${1:-20} 1" >&7
for _ in $(seq 1 200); do grep -q '^produced' "$TMP/mock.out" && break; sleep 0.05; done
cd "$HERE"
BOOTSTRAP=$(cat "$TMP/boot") "$BUILD/bin/baseplate-serve" --bind 127.0.0.1:${PORT:-9090} worker.ini
