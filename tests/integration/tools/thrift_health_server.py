"""A Thrift service for tests/integration/test-healthcheck-thrift.sh,
written with python3-thrift (/usr/bin/python3): BaseplateServiceV2's
is_healthy over THeaderProtocol, without generated code.

    thrift_health_server.py MODE PORTFILE

Listens on 127.0.0.1 (a port of the kernel's choosing, written to PORTFILE)
and answers every call as MODE says:

    healthy, unhealthy    returns true / false
    zlib                  returns true, zlib-transformed, with info headers
    error                 raises Error(code=503, message="database down")
    app-exception         a TApplicationException (INTERNAL_ERROR, "boom")
    no-result             a reply with neither success nor an exception
    silent                reads the call, never answers
    garbage               answers with bytes that are not Thrift
    close                 closes the connection without answering

For each call it prints "call NAME seqid=N probe=P client_type=T" (probe
"none" when the request had none).
"""
import socket
import sys
import time

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType, THeaderTransformID
from thrift.transport.TSocket import TSocket

MODE, PORTFILE = sys.argv[1], sys.argv[2]
ALL = (THeaderClientType.HEADERS, THeaderClientType.FRAMED_BINARY,
       THeaderClientType.UNFRAMED_BINARY, THeaderClientType.FRAMED_COMPACT,
       THeaderClientType.UNFRAMED_COMPACT)


def read_args(proto):
    probe = "none"
    proto.readStructBegin()
    while True:
        _, ftype, fid = proto.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 1 and ftype == TType.STRUCT:
            proto.readStructBegin()
            while True:
                _, t2, f2 = proto.readFieldBegin()
                if t2 == TType.STOP:
                    break
                if f2 == 1 and t2 == TType.I32:
                    probe = proto.readI32()
                else:
                    proto.skip(t2)
                proto.readFieldEnd()
            proto.readStructEnd()
        else:
            proto.skip(ftype)
        proto.readFieldEnd()
    proto.readStructEnd()
    proto.readMessageEnd()
    return probe


def reply(proto, name, seqid, write_fields):
    proto.writeMessageBegin(name, TMessageType.REPLY, seqid)
    proto.writeStructBegin("is_healthy_result")
    write_fields(proto)
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeMessageEnd()
    proto.trans.flush()


def success(value):
    def write(proto):
        proto.writeFieldBegin("success", TType.BOOL, 0)
        proto.writeBool(value)
        proto.writeFieldEnd()
    return write


def error(proto):
    proto.writeFieldBegin("error", TType.STRUCT, 1)
    proto.writeStructBegin("Error")
    proto.writeFieldBegin("code", TType.I32, 1)
    proto.writeI32(503)
    proto.writeFieldEnd()
    proto.writeFieldBegin("message", TType.STRING, 2)
    proto.writeString("database down")
    proto.writeFieldEnd()
    proto.writeFieldBegin("details", TType.MAP, 3)
    proto.writeMapBegin(TType.STRING, TType.STRING, 1)
    proto.writeString("db")
    proto.writeString("primary")
    proto.writeMapEnd()
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeFieldEnd()


def serve(conn):
    sock = TSocket()
    sock.handle = conn
    proto = THeaderProtocol(sock, ALL)
    while True:
        try:
            name, _, seqid = proto.readMessageBegin()
        except Exception:
            return
        probe = read_args(proto)
        print("call %s seqid=%d probe=%s client_type=%d"
              % (name, seqid, probe, proto.trans._client_type), flush=True)
        if MODE in ("healthy", "unhealthy"):
            reply(proto, name, seqid, success(MODE == "healthy"))
        elif MODE == "zlib":
            proto.add_transform(THeaderTransformID.ZLIB)
            proto.set_header(b"Answered-By", b"python3-thrift")
            reply(proto, name, seqid, success(True))
        elif MODE == "error":
            reply(proto, name, seqid, error)
        elif MODE == "no-result":
            reply(proto, name, seqid, lambda p: None)
        elif MODE == "app-exception":
            proto.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
            TApplicationException(TApplicationException.INTERNAL_ERROR, "boom").write(proto)
            proto.writeMessageEnd()
            proto.trans.flush()
        elif MODE == "silent":
            time.sleep(60)
        elif MODE == "garbage":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        elif MODE == "close":
            return


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    with open(PORTFILE + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    import os
    os.rename(PORTFILE + ".tmp", PORTFILE)
    while True:
        conn, _ = ls.accept()
        try:
            serve(conn)
        finally:
            conn.close()


main()
