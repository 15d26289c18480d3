"""The Thrift transports against python3-thrift (Debian's, /usr/bin/python3),
for tests/integration/test-theader-interop.sh:

    theader_interop.py ECHO

ECHO is tests/theader-echo (built with the tests): it reads frames on stdin,
describes each on stderr and writes it back re-encoded on stdout. Frames
python3-thrift writes (THeader binary and compact, with zlib, with info
headers; framed and unframed binary and compact) must be read as they were
written, and what ECHO writes back must be read by python3-thrift's
THeaderProtocol (and be the very bytes python3-thrift wrote). Prints one
"ok"/"FAILED" line per check and "N passed, M failed".
"""
import subprocess
import sys

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransformID,
)
from thrift.transport.TTransport import TFramedTransport, TMemoryBuffer
from checklib import check, finish  # noqa: E402

ECHO = sys.argv[1]
ALL_CLIENTS = (
    THeaderClientType.HEADERS,
    THeaderClientType.FRAMED_BINARY,
    THeaderClientType.UNFRAMED_BINARY,
    THeaderClientType.FRAMED_COMPACT,
    THeaderClientType.UNFRAMED_COMPACT,
)
PROTOCOLS = {"binary": (TBinaryProtocol, THeaderSubprotocolID.BINARY, 0),
             "compact": (TCompactProtocol, THeaderSubprotocolID.COMPACT, 1)}



def write_message(proto, name, seqid, text, number):
    """name(1: string text, 2: i32 number) as a CALL."""
    proto.writeMessageBegin(name, TMessageType.CALL, seqid)
    proto.writeStructBegin("args")
    proto.writeFieldBegin("text", TType.STRING, 1)
    proto.writeString(text)
    proto.writeFieldEnd()
    proto.writeFieldBegin("number", TType.I32, 2)
    proto.writeI32(number)
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeMessageEnd()


def read_message(proto):
    name, mtype, seqid = proto.readMessageBegin()
    fields = {}
    proto.readStructBegin()
    while True:
        _, ftype, fid = proto.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 1 and ftype == TType.STRING:
            fields["text"] = proto.readString()
        elif fid == 2 and ftype == TType.I32:
            fields["number"] = proto.readI32()
        else:
            proto.skip(ftype)
        proto.readFieldEnd()
    proto.readStructEnd()
    proto.readMessageEnd()
    return name, mtype, seqid, fields


def plain_payload(protocol, name, seqid, text, number):
    buf = TMemoryBuffer()
    write_message(PROTOCOLS[protocol][0](buf), name, seqid, text, number)
    return buf.getvalue()


class Case:
    def __init__(self, label, transport, protocol, seqid, text, number=7, zlib=False,
                 headers=None):
        self.label, self.transport, self.protocol = label, transport, protocol
        self.seqid, self.text, self.number = seqid, text, number
        self.zlib, self.headers = zlib, headers or {}
        self.name = "method_" + label.replace(" ", "_").replace(",", "")

    def frame(self):
        """The frame python3-thrift writes for this case."""
        buf = TMemoryBuffer()
        cls, proto_id, _ = PROTOCOLS[self.protocol]
        if self.transport == "header":
            proto = THeaderProtocol(buf, [THeaderClientType.HEADERS], proto_id)
            for k, v in self.headers.items():
                proto.set_header(k, v)
            if self.zlib:
                proto.add_transform(THeaderTransformID.ZLIB)
            write_message(proto, self.name, self.seqid, self.text, self.number)
            proto.trans.flush()
        elif self.transport == "framed":
            trans = TFramedTransport(buf)
            write_message(cls(trans), self.name, self.seqid, self.text, self.number)
            trans.flush()
        else:
            write_message(cls(buf), self.name, self.seqid, self.text, self.number)
        return buf.getvalue()

    def description(self):
        """What theader-echo should say of the frame."""
        transport = {"unframed": 0, "framed": 1, "header": 2}[self.transport]
        header = self.transport == "header"
        return {
            "transport": str(transport),
            "protocol": str(PROTOCOLS[self.protocol][2]),
            "zlib": "1" if self.zlib else "0",
            "seqid": str(self.seqid if header else 0),
            "flags": "0",
            "payload": plain_payload(self.protocol, self.name, self.seqid, self.text,
                                     self.number).hex(),
            "headers": ",".join(k.hex() + ":" + v.hex() for k, v in self.headers.items()),
        }


def describe(line):
    words = line.split(" ")
    out = {}
    for w in words[1:]:
        k, _, v = w.partition("=")
        out[k] = v
    out.pop("len", None)
    return out


def echo(data, *args):
    p = subprocess.run([ECHO] + list(args), input=data, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode("latin-1").splitlines()


def read_back(data, n):
    """n messages read from data by python3-thrift's THeaderProtocol (any
    client type allowed): (client type, headers, message) each."""
    buf = TMemoryBuffer(data)
    proto = THeaderProtocol(buf, ALL_CLIENTS)
    out = []
    for _ in range(n):
        msg = read_message(proto)
        out.append((proto.trans._client_type, dict(proto.get_headers()), msg))
    return out, buf._buffer.tell() == len(data)


CLIENT_TYPE = {("header", "binary"): THeaderClientType.HEADERS,
               ("header", "compact"): THeaderClientType.HEADERS,
               ("framed", "binary"): THeaderClientType.FRAMED_BINARY,
               ("framed", "compact"): THeaderClientType.FRAMED_COMPACT,
               ("unframed", "binary"): THeaderClientType.UNFRAMED_BINARY,
               ("unframed", "compact"): THeaderClientType.UNFRAMED_COMPACT}

BIG = "".join(chr(0x61 + i % 26) for i in range(300000))
CASES = []
for protocol in ("binary", "compact"):
    CASES += [
        Case("header " + protocol, "header", protocol, 1, "hello"),
        Case("header " + protocol + " zlib", "header", protocol, -5, "zzz" * 100, zlib=True),
        Case("header " + protocol + " info headers", "header", protocol, 2 ** 31 - 1, "h",
             headers={b"Trace": b"123", b"Span": b"456", b"Empty": b"",
                      b"Bytes": bytes(range(256))}),
        Case("header " + protocol + " zlib info headers", "header", protocol, 3, "hz",
             zlib=True, headers={b"Edge-Request": b"\x00" * 40}),
        Case("header " + protocol + " zlib big", "header", protocol, 4, BIG, zlib=True),
        Case("framed " + protocol, "framed", protocol, 5, "framed", number=-1),
        Case("unframed " + protocol, "unframed", protocol, 6, "unframed", number=2 ** 31 - 1),
        Case("unframed " + protocol + " big", "unframed", protocol, 7, BIG),
    ]

# Each frame alone: read as written, echoed to the same bytes, read back by
# python3-thrift.
for case in CASES:
    frame = case.frame()
    rc, out, err = echo(frame)
    check(case.label + ": read", (rc, [describe(l) for l in err]), (0, [case.description()]))
    check(case.label + ": written back as python3-thrift wrote it", out == frame, True)
    got, consumed = read_back(out, 1)
    want_headers = case.headers if case.transport == "header" else {}
    check(case.label + ": python3-thrift reads what we wrote",
          got, [(CLIENT_TYPE[(case.transport, case.protocol)], want_headers,
                 (case.name, TMessageType.CALL, case.seqid,
                  {"text": case.text, "number": case.number}))])
    check(case.label + ": all of it", consumed, True)

# All of them in one stream, one after the other.
stream = b"".join(c.frame() for c in CASES)
rc, out, err = echo(stream)
check("a stream of every kind: read", (rc, [describe(l) for l in err]),
      (0, [c.description() for c in CASES]))
check("a stream of every kind: written back", out == stream, True)

# Frames we transform ourselves (zlib, added info headers) for python3-thrift.
for protocol in ("binary", "compact"):
    case = Case("plain " + protocol, "header", protocol, 11, "compress me " * 50)
    rc, out, err = echo(case.frame(), "--zlib", "--add-header", "Added=yes",
                        "--add-header", "Second=2")
    check("our zlib and info headers (%s): echoed" % protocol, rc, 0)
    check("our zlib and info headers (%s): smaller" % protocol, len(out) < len(case.frame()),
          True)
    got, consumed = read_back(out, 1)
    check("our zlib and info headers (%s): python3-thrift reads them" % protocol, got,
          [(THeaderClientType.HEADERS, {b"Added": b"yes", b"Second": b"2"},
            (case.name, TMessageType.CALL, 11, {"text": case.text, "number": 7}))])

# Limits: frames python3-thrift writes beyond our max_frame.
big_framed = Case("framed big", "framed", "binary", 1, BIG).frame()
rc, out, err = echo(big_framed, "--max-frame", "100000")
check("a framed frame beyond --max-frame",
      (rc, "exceeds the limit of 100000" in err[-1]), (1, True))
big_zlib = Case("header zlib big", "header", "compact", 1, BIG, zlib=True).frame()
check("the zlib frame itself is small", len(big_zlib) < 100000, True)
rc, out, err = echo(big_zlib, "--max-frame", "100000")
check("a zlib payload inflating beyond --max-frame",
      (rc, "inflates beyond 100000" in err[-1]), (1, True))
rc, out, err = echo(Case("unframed big", "unframed", "binary", 1, BIG).frame(),
                    "--max-frame", "100000")
check("an unframed message beyond --max-frame", (rc, "larger than 100000" in err[-1]),
      (1, True))

# Truncated: every frame cut short says how much it needs.
for case in CASES[:3]:
    frame = case.frame()
    rc, out, err = echo(frame[:-1])
    check(case.label + " cut short", (rc, err[-1]), (1, "truncated need=%d" % len(frame)))

finish()
