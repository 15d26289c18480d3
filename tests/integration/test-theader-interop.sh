# The Thrift transports (src/thrift/theader.c) against python3-thrift:
# frames it writes (THeader binary/compact, zlib, info headers; framed and
# unframed) read as written, and what we write back read by its
# THeaderProtocol. The checks are in tools/theader_interop.py.
. "$(dirname "$0")/lib.sh"

if ! /usr/bin/python3 -c 'import thrift.transport.THeaderTransport' 2>"$TMP/err"; then
  fail "python3-thrift is importable by /usr/bin/python3 (scripts/install-deps)" "$(cat "$TMP/err")"
  finish
fi
/usr/bin/python3 "$SOURCE_DIR/tests/integration/tools/theader_interop.py" "$BUILD_DIR/tests/theader-echo"
