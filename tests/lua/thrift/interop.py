"""The peer of tests/lua/test-thrift-codec.lua: Apache Thrift's Python
library (Debian's python3-thrift) and code that `thrift --gen py` generated
from codec.thrift.

  interop.py GENDIR write          print "case protocol hex" for every sample
  interop.py GENDIR read < lines   read "case protocol hex" lines written by
                                   the codec under test; print "ok case protocol"
                                   or "FAIL case protocol: why" for each

The samples here and in the Lua test describe the same values.
"""
import sys

sys.path.insert(0, sys.argv[1])

from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.Thrift import TApplicationException, TMessageType  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

from codec import Things  # noqa: E402
from codec.ttypes import Defaults, Everything, Kind, Tree, Value, Boom  # noqa: E402
from shared.ttypes import Color, Point  # noqa: E402

PROTOCOLS = {
    "binary": TBinaryProtocol.TBinaryProtocol,
    "compact": TCompactProtocol.TCompactProtocol,
}


def tree(depth):
    if depth == 0:
        return Tree(value=0, children=[])
    return Tree(value=depth, children=[tree(depth - 1), Tree(value=-depth)])


class Message:
    """A whole message: envelope and body, as a generated client writes it."""

    def __init__(self, name, mtype, seqid, body):
        self.name, self.mtype, self.seqid, self.body = name, mtype, seqid, body

    def write(self, proto):
        proto.writeMessageBegin(self.name, self.mtype, self.seqid)
        self.body.write(proto)
        proto.writeMessageEnd()

    def read(self, proto):
        name, mtype, seqid = proto.readMessageBegin()
        self.body.read(proto)
        proto.readMessageEnd()
        return (name, mtype, seqid)


# name -> (make an empty value to read into, the expected value, deterministic?)
SAMPLES = {
    "everything": (Everything, Everything(
        a_bool=True, a_byte=-3, an_i16=-300, an_i32=2**31 - 1, an_i64=-2**63, a_double=3.25,
        a_string="h\u00e9llo \u2713", a_binary=bytes(range(256)), a_name="n", a_color=Color.BLUE,
        a_user=2**53 + 1, ints=[1, -2, 3], names={"only"}, by_id={7: "seven"},
        path=[Point(x=1, y=2), Point(x=-3, y=4)], buckets={"b": [1, 2]}, deep=[[{"k": {5}}], []],
        origin=Point(x=0, y=0), by_point={}, blobs=[b"\x00\xff", b""], kind=Kind.FIVE), True),
    "sparse": (Everything, Everything(an_i32=1, a_bool=False, an_i64=2**63 - 1), True),
    "multi": (Everything, Everything(by_id={1: "a", 2: "b", 3: "c"}, names={"x", "y", "z"},
                                    buckets={"p": [], "q": [9]}), False),
    "union": (Value, Value(list_value=[Value(int_value=1), Value(str_value="x"),
                                       Value(list_value=[])]), True),
    "tree": (Tree, tree(6), True),
    "defaults": (Defaults, Defaults(req_n=3), True),
    "call": (lambda: Message(None, None, None, Things.get_args()),
             Message("get", TMessageType.CALL, 7, Things.get_args(id=2**40, name="x")), True),
    "reply": (lambda: Message(None, None, None, Things.get_result()),
              Message("get", TMessageType.REPLY, -5,
                      Things.get_result(boom=Boom(message="bad", code=42))), True),
    "app_exception": (lambda: Message(None, None, None, TApplicationException()),
                      Message("nope", TMessageType.EXCEPTION, 1,
                              TApplicationException(TApplicationException.UNKNOWN_METHOD,
                                                    "unknown method nope")), True),
}


def encode(value, proto):
    buf = TTransport.TMemoryBuffer()
    value.write(PROTOCOLS[proto](buf))
    return buf.getvalue()


def decode(make, data, proto):
    value = make()
    extra = value.read(PROTOCOLS[proto](TTransport.TMemoryBuffer(data)))
    if isinstance(value, Message):
        value.name, value.mtype, value.seqid = extra
    return value


def same(a, b):
    if isinstance(a, Message):
        return (a.name, a.mtype, a.seqid) == (b.name, b.mtype, b.seqid) and same(a.body, b.body)
    if isinstance(a, TApplicationException):
        return (a.type, a.message) == (b.type, b.message)
    return a == b


def main():
    gendir, mode = sys.argv[1], sys.argv[2]
    if mode == "write":
        for name, (_, value, _) in SAMPLES.items():
            for proto in PROTOCOLS:
                print(name, proto, encode(value, proto).hex())
        return
    for line in sys.stdin:
        name, proto, hexdata = line.split()
        make, want, deterministic = SAMPLES[name]
        data = bytes.fromhex(hexdata)
        try:
            got = decode(make, data, proto)
        except Exception as e:  # the verdict is the output
            print("FAIL", name, proto + ": cannot decode: " + repr(e))
            continue
        if not same(got, want):
            print("FAIL", name, proto + ": decoded " + repr(got.__dict__))
        elif deterministic and encode(want, proto) != data:
            print("FAIL", name, proto + ": bytes differ: python " + encode(want, proto).hex())
        else:
            print("ok", name, proto)
    del gendir


if __name__ == "__main__":
    main()
