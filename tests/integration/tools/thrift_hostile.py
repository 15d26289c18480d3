"""Hostile input to the Thrift server (tests/integration/test-thrift-server.sh):

    thrift_hostile.py PORT MESSAGE_TIMEOUT

Raw bytes on fresh connections: garbage, an HTTP request, frames larger
than max_frame_size (64 KiB in apps/thriftapp.ini) or declaring 2 GB, an
unknown transform, a message that is not a call, truncated frames that
stall; and calls whose arguments are malformed (negative and 2 GB
lengths, containers nested 10,000 deep, wrong wire types). Each must get a
TApplicationException or a closed connection, promptly. Prints one
"ok"/"FAILED" line per check and "N passed, M failed".
"""
import socket
import struct
import sys
import time

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer
from checklib import check, finish  # noqa: E402

PORT = int(sys.argv[1])
MESSAGE_TIMEOUT = float(sys.argv[2])



def exchange(data, wait=3.0):
    """Send data, then read until the server closes or `wait` passes:
    (bytes read, 'closed' | 'open', seconds taken)."""
    s = socket.create_connection(("127.0.0.1", PORT))
    s.settimeout(wait)
    start = time.time()
    try:
        s.sendall(data)
    except OSError:
        pass
    got = b""
    state = "open"
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                state = "closed"
                break
            got += chunk
            if len(got) >= 4 and len(got) >= 4 + struct.unpack(">I", got[:4])[0]:
                break  # one whole framed answer
    except socket.timeout:
        pass
    except ConnectionResetError:
        state = "closed"
    s.close()
    return got, state, time.time() - start


def message(name, write_args, mtype=TMessageType.CALL):
    buf = TMemoryBuffer()
    p = TBinaryProtocol(buf)
    p.writeMessageBegin(name, mtype, 5)
    p.writeStructBegin("args")
    write_args(p, buf)
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeMessageEnd()
    return buf.getvalue()


def framed(payload):
    return struct.pack(">I", len(payload)) + payload


def app_exception(answer):
    """The TApplicationException (type, message) in a framed binary answer, or what came."""
    if len(answer) < 4:
        return ("no answer", answer)
    p = TBinaryProtocol(TMemoryBuffer(answer[4:]))
    _, mtype, _ = p.readMessageBegin()
    if mtype != TMessageType.EXCEPTION:
        return ("message type", mtype)
    x = TApplicationException()
    x.read(p)
    return (x.type, x.message)


def raw(bytes_):
    def w(p, buf):
        buf.write(bytes_)
    return w


# --- connections that must close -------------------------------------------------

got, state, t = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
check("an HTTP request on the Thrift port: closed, nothing sent", (got, state), (b"", "closed"))
got, state, t = exchange(b"\x00\x00\x00\x10" + b"\xde\xad\xbe\xef" * 4)
check("a frame of garbage: closed", (got, state), (b"", "closed"))
got, state, t = exchange(struct.pack(">I", 0x7FFFFFFF) + b"\x0f\xff" + b"\x00" * 10)
check("a THeader frame declaring 2 GB: closed at once", (got, state, t < 1), (b"", "closed", True))
got, state, t = exchange(struct.pack(">I", 100000) + b"\x80\x01\x00\x01" + b"\x00" * 1000)
check("a framed message over max_frame_size: closed at once", (got, state, t < 1), (b"", "closed", True))
got, state, t = exchange(b"\x80\x01\x00\x01" + b"\x00\x00\x00\x03add" + b"\x00\x00\x00\x01"
                         + b"\x0b\x00\x01" + b"\x00\x01\x00\x00" + b"x" * 70000)
check("an unframed message growing past max_frame_size: closed", (got, state), (b"", "closed"))
# THeader: length, magic, flags, seqid, header words, protocol 0, one transform id 9
hdr = bytes([0, 1, 9, 0])
got, state, t = exchange(struct.pack(">IHHIH", 10 + len(hdr), 0x0FFF, 0, 1, 1) + hdr)
check("a THeader frame with an unknown transform: closed", (got, state), (b"", "closed"))
reply = message("add", raw(b""), TMessageType.REPLY)
got, state, t = exchange(framed(reply))
check("a REPLY sent to the server: closed", (got, state), (b"", "closed"))
call = framed(message("add", raw(b"")))
got, state, t = exchange(call[:10], wait=MESSAGE_TIMEOUT + 3)
check("half a frame, then silence: closed after message_timeout",
      (got, state, MESSAGE_TIMEOUT - 0.5 < t < MESSAGE_TIMEOUT + 2.5), (b"", "closed", True))

# --- calls that must be answered with a TApplicationException --------------------

def field(p, ftype, fid):
    p.writeFieldBegin("f", ftype, fid)


def neg_string(p, buf):
    field(p, TType.STRUCT, 1)  # echo(1: AllTypes value)
    field(p, TType.STRING, 7)
    buf.write(struct.pack(">i", -1))


got, _, _ = exchange(framed(message("echo", neg_string)))
check("a negative string length: PROTOCOL_ERROR",
      app_exception(got)[0], TApplicationException.PROTOCOL_ERROR)


def huge_string(p, buf):
    field(p, TType.STRUCT, 1)
    field(p, TType.STRING, 7)
    buf.write(struct.pack(">i", 0x7FFFFFFF) + b"abc")


got, _, _ = exchange(framed(message("echo", huge_string)))
check("a 2 GB declared string: PROTOCOL_ERROR", app_exception(got)[0], TApplicationException.PROTOCOL_ERROR)


def deep(p, buf):
    # an unknown field: list<list<list<...>>> 10,000 deep (skipped: still bounded)
    field(p, TType.LIST, 99)
    for _ in range(10000):
        buf.write(bytes([TType.LIST]) + struct.pack(">i", 1))
    buf.write(bytes([TType.I32]) + struct.pack(">i", 0))


got, _, _ = exchange(framed(message("echo", deep)))
ax = app_exception(got)
check("containers nested 10,000 deep: PROTOCOL_ERROR", (ax[0], "nested deeper than 64" in str(ax[1])),
      (TApplicationException.PROTOCOL_ERROR, True))


def missing_required(p, buf):
    field(p, TType.STRUCT, 1)
    field(p, TType.MAP, 11)  # map<string, Point>: a Point without its required x
    buf.write(bytes([TType.STRING, TType.STRUCT]) + struct.pack(">i", 1))
    buf.write(struct.pack(">i", 1) + b"k")
    buf.write(bytes([TType.STOP]))


got, _, _ = exchange(framed(message("echo", missing_required)))
ax = app_exception(got)
check("a missing required field: PROTOCOL_ERROR naming it", (ax[0], "required field x" in str(ax[1])),
      (TApplicationException.PROTOCOL_ERROR, True))


def wrong_type(p, buf):
    field(p, TType.STRING, 1)  # add's a is an i64; a string with that id is skipped
    buf.write(struct.pack(">i", 3) + b"abc")
    field(p, TType.I64, 2)
    buf.write(struct.pack(">q", 5))


got, state, _ = exchange(framed(message("add", wrong_type)))
check("a field of the wrong wire type is skipped (a missing i64 is an error in the handler)",
      app_exception(got)[0], TApplicationException.INTERNAL_ERROR)

# --- and the server is still fine --------------------------------------------------


def add_args(p, buf):
    field(p, TType.I64, 1)
    p.writeI64(40)
    field(p, TType.I64, 2)
    p.writeI64(2)


got, state, _ = exchange(framed(message("add", add_args)))
pr = TBinaryProtocol(TMemoryBuffer(got[4:]))
name, mtype, seqid = pr.readMessageBegin()
pr.readStructBegin()
_, ftype, fid = pr.readFieldBegin()
check("after all that, a call is served", (name, mtype, seqid, fid, pr.readI64()),
      ("add", TMessageType.REPLY, 5, 0, 42))

finish()
