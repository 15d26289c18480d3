"""A python3-thrift client (Debian's, /usr/bin/python3) against a Lua
Thrift service, for tests/integration/test-thrift-server.sh:

    thrift_client.py PORT IDL_DIR [MODE...]

It generates the Python code of IDL_DIR/testsvc.thrift with the thrift
compiler, then calls the service (tests/integration/apps/thriftapp.lua)
in each MODE (default: all): THeader binary, compact and zlib; framed
binary and compact; unframed binary and compact. Every field type and
container, declared and undeclared exceptions, TApplicationException,
oneway, inherited methods, the built-in health check and an unknown
method; in THeader modes also the headers the server sees, the trace it
continues and the Deadline-Budget. Prints one "ok"/"FAILED" line per
check and "N passed, M failed" (exit 1 on a failure).
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

PORT = int(sys.argv[1])
IDL_DIR = sys.argv[2]
MODES = sys.argv[3:] or ["header-binary", "header-compact", "header-zlib", "framed-binary",
                         "framed-compact", "unframed-binary", "unframed-compact"]

OUT = tempfile.mkdtemp(prefix="bp-thrift-py.")
atexit.register(shutil.rmtree, OUT, True)
subprocess.check_call(["thrift", "-r", "--gen", "py", "-out", OUT, os.path.join(IDL_DIR, "testsvc.thrift")])
sys.path.insert(0, OUT)

from shared.ttypes import Point  # noqa: E402
from testsvc import Test  # noqa: E402
from testsvc.ttypes import AllTypes, Color  # noqa: E402
from thrift.protocol.TBinaryProtocol import TBinaryProtocol  # noqa: E402
from thrift.protocol.TCompactProtocol import TCompactProtocol  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.Thrift import TApplicationException, TMessageType, TType  # noqa: E402
from thrift.transport.THeaderTransport import (  # noqa: E402
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransformID,
)
from thrift.transport.TSocket import TSocket  # noqa: E402
from thrift.transport.TTransport import TBufferedTransport, TFramedTransport  # noqa: E402
from checklib import check, finish  # noqa: E402




def connect(mode):
    sock = TSocket("127.0.0.1", PORT)
    sock.setTimeout(5000)
    kind, proto = mode.split("-")
    if kind == "header":
        sub = THeaderSubprotocolID.COMPACT if proto == "compact" else THeaderSubprotocolID.BINARY
        prot = THeaderProtocol(sock, [THeaderClientType.HEADERS], default_protocol=sub)
        if proto == "zlib":
            prot.trans.add_transform(THeaderTransformID.ZLIB)
        trans = prot.trans
    else:
        trans = TFramedTransport(sock) if kind == "framed" else TBufferedTransport(sock)
        prot = TCompactProtocol(trans) if proto == "compact" else TBinaryProtocol(trans)
    trans.open()
    return Test.Client(prot), prot, trans


def raises(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    return None


def raw_call(prot, name, write_args, read_result):
    """A call written by hand: methods the IDL does not have."""
    prot.writeMessageBegin(name, TMessageType.CALL, 77)
    prot.writeStructBegin("args")
    write_args(prot)
    prot.writeFieldStop()
    prot.writeStructEnd()
    prot.writeMessageEnd()
    prot.trans.flush()
    rname, mtype, seqid = prot.readMessageBegin()
    if mtype == TMessageType.EXCEPTION:
        x = TApplicationException()
        x.read(prot)
        prot.readMessageEnd()
        return (rname, seqid, x)
    value = read_result(prot)
    prot.readMessageEnd()
    return (rname, seqid, value)


def read_bool_result(prot):
    value = None
    prot.readStructBegin()
    while True:
        _, ftype, fid = prot.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 0 and ftype == TType.BOOL:
            value = prot.readBool()
        else:
            prot.skip(ftype)
        prot.readFieldEnd()
    prot.readStructEnd()
    return value


def probe_args(probe):
    def write(prot):
        if probe is None:
            return
        prot.writeFieldBegin("request", TType.STRUCT, 1)
        prot.writeStructBegin("IsHealthyRequest")
        prot.writeFieldBegin("probe", TType.I32, 1)
        prot.writeI32(probe)
        prot.writeFieldEnd()
        prot.writeFieldStop()
        prot.writeStructEnd()
        prot.writeFieldEnd()
    return write


ALL = AllTypes(
    b=True, by=-128, s=-32768, i=2147483647, l=-(2 ** 63), d=-1.5e300,
    str="h\u00e9llo \u2603", bin=b"\x00\xff\x80binary", li=[1, -2, 3],
    ss={"a", "b"}, mp={"p": Point(x=1, y=2), "q": Point(x=-3, y=7)}, color=Color.BLUE,
    pt=Point(x=5, y=6), nested=[[1, 2], [], [2 ** 62 + 1]],
)

for mode in MODES:
    client, prot, trans = connect(mode)
    check(mode + ": every field type round-trips", client.echo(ALL), ALL)
    check(mode + ": an empty struct round-trips (unset fields stay unset)",
          client.echo(AllTypes()), AllTypes(mp=None))
    check(mode + ": i64 is exact beyond 2^53", client.add(2 ** 53 + 1, 2 ** 60), 2 ** 53 + 1 + 2 ** 60)
    check(mode + ": a method of the parent service", client.whoami(), "thriftapp")
    check(mode + ": a string result", client.get(1), "one")
    e = raises(lambda: client.get(7))
    check(mode + ": a declared exception comes back as itself",
          (type(e).__name__, getattr(e, "id", None), getattr(e, "message", None)),
          ("NotFound", 7, "no such id"))
    e = raises(lambda: client.fail("lua"))
    check(mode + ": a Lua error is a TApplicationException INTERNAL_ERROR",
          (type(e).__name__, getattr(e, "type", None), getattr(e, "message", None)),
          ("TApplicationException", TApplicationException.INTERNAL_ERROR, "Internal error"))
    e = raises(lambda: client.fail("undeclared"))
    check(mode + ": an undeclared exception is an INTERNAL_ERROR",
          (type(e).__name__, getattr(e, "type", None)),
          ("TApplicationException", TApplicationException.INTERNAL_ERROR))
    e = raises(lambda: client.fail("app"))
    check(mode + ": a TApplicationException raised by the handler",
          (type(e).__name__, getattr(e, "type", None), getattr(e, "message", None)),
          ("TApplicationException", TApplicationException.UNKNOWN, "told to"))
    check(mode + ": the connection serves on after errors", client.add(1, 2), 3)
    client.note("note in " + mode)
    check(mode + ": a oneway call is served (and nothing comes back)", client.last_note(), "note in " + mode)
    check(mode + ": is_healthy(readiness), built in", raw_call(prot, "is_healthy", probe_args(1), read_bool_result),
          ("is_healthy", 77, True))
    check(mode + ": the older is_healthy() without arguments",
          raw_call(prot, "is_healthy", probe_args(None), read_bool_result), ("is_healthy", 77, True))
    name, seqid, x = raw_call(prot, "no_such_method", probe_args(None), read_bool_result)
    check(mode + ": an unknown method is a TApplicationException UNKNOWN_METHOD",
          (name, seqid, type(x).__name__, getattr(x, "type", None), getattr(x, "message", None)),
          ("no_such_method", 77, "TApplicationException", TApplicationException.UNKNOWN_METHOD,
           "Unknown function no_such_method"))
    if mode.startswith("header"):
        def send_headers():  # (python3-thrift sends a call's headers with it, then forgets them)
            for k, v in ((b"Trace", b"1234"), (b"Span", b"5678"), (b"Parent", b"1111"), (b"Sampled", b"1"),
                         (b"Deadline-Budget", b"1500"), (b"X-Custom", b"v\x00w")):
                prot.trans.set_header(k, v)
        send_headers()
        got = client.headers()
        check(mode + ": the info headers reach the handler",
              (got.get("X-Custom"), got.get("Trace")), ("v\x00w", "1234"))
        send_headers()
        trace, span, parent, method = client.trace().split(" ")
        # (Baseplate's server span takes the caller's Span as its own ID and
        # Parent as its parent: the two ends of a call are one span)
        check(mode + ": the server span continues the caller's trace", (trace, span, parent, method),
              ("1234", "5678", "1111", "trace"))
        send_headers()
        check(mode + ": Deadline-Budget reaches the handler in seconds", client.budget(), 1.5)
        check(mode + ": without one, no budget", client.budget(), -1)
    trans.close()

finish()
