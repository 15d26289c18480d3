"""The reference bytes for tests/lua/test-events.lua's v2 serializer test:
one struct written by Apache Thrift's own Python TJSONProtocol (Debian's
python3-thrift), as Baseplate.py's serialize_v2_event writes events. The
struct is described by hand (thrift_spec) to match the test's schema."""
import sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from thrift.Thrift import TType
from thrift.protocol.TBase import TBase
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.TSerialization import serialize

class Inner(TBase):
    thrift_spec = (None, (1, TType.STRING, 'name', 'UTF8', None), (2, TType.I32, 'n', None, None))
    def __init__(self, name=None, n=None): self.name, self.n = name, n

class Event(TBase):
    thrift_spec = (
        None,
        (1, TType.STRING, 'source', 'UTF8', None),
        (2, TType.STRING, 'action', 'UTF8', None),
        (3, TType.I64, 'client_timestamp', None, None),
        (4, TType.BOOL, 'flag', None, None),
        (5, TType.DOUBLE, 'ratio', None, None),
        (6, TType.LIST, 'tags', (TType.STRING, 'UTF8', False), None),
        (7, TType.MAP, 'counts', (TType.STRING, 'UTF8', TType.I32, None, False), None),
        (8, TType.STRUCT, 'inner', [Inner, None], None),
        (9, TType.STRING, 'blob', 'BINARY', None),
        (10, TType.BYTE, 'small', None, None),
        (11, TType.MAP, 'imap', (TType.I32, None, TType.BOOL, None, False), None),
        (12, TType.STRING, 'missing', 'UTF8', None),
        (13, TType.LIST, 'ratios', (TType.DOUBLE, None, False), None),
    )
    def __init__(self, **kw):
        for f in self.thrift_spec[1:]: setattr(self, f[2], kw.get(f[2]))

ev = Event(source="baseplate", action='te"st\n/é', client_timestamp=1700000000123456, flag=True,
           ratio=0.1, tags=["a", "b"], counts={"x": 3}, inner=Inner(name="in", n=-7),
           blob=b"\x00\xffab", small=-3, imap={5: False}, ratios=[1.0, 2.5, 1e300])
sys.stdout.write(serialize(ev, TJSONProtocolFactory()).decode())
