"""A python3-thrift THeader server (Debian's, /usr/bin/python3) of
apps/thrift/testsvc.thrift, for tests/integration/test-thrift-client.sh:

    thrift_server.py IDL_DIR PORT|UNIX_PATH

It generates the Python code of IDL_DIR/testsvc.thrift with the thrift
compiler and serves the Test service (one thread per connection) over
THeader, binary or compact as the client speaks. headers() and trace()
report the THeader headers of the call; sleep() sleeps. Prints
"listening" once it accepts connections.
"""
import os
import subprocess
import sys
import tempfile
import threading
import time

IDL_DIR = sys.argv[1]
WHERE = sys.argv[2]

OUT = tempfile.mkdtemp(prefix="bp-thrift-pysrv.")
subprocess.check_call(["thrift", "-r", "--gen", "py", "-out", OUT, os.path.join(IDL_DIR, "testsvc.thrift")])
sys.path.insert(0, OUT)

from testsvc import Test  # noqa: E402
from testsvc.ttypes import NotFound  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocolFactory  # noqa: E402
from thrift.server.TServer import TThreadedServer  # noqa: E402
from thrift.Thrift import TApplicationException  # noqa: E402
from thrift.transport.TSocket import TServerSocket  # noqa: E402
from thrift.transport.TTransport import TTransportFactoryBase  # noqa: E402

seen = threading.local()


class Processor(Test.Processor):
    """Keeps each call's THeader headers where the handler finds them."""

    def process(self, iprot, oprot):
        # The headers are read with the message: look once it has begun.
        orig = iprot.readMessageBegin

        def read_begin():
            r = orig()
            seen.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in iprot.get_headers().items()}
            return r

        iprot.readMessageBegin = read_begin
        try:
            return Test.Processor.process(self, iprot, oprot)
        finally:
            iprot.readMessageBegin = orig


class Handler:
    notes = []

    def whoami(self):
        return "pyserver"

    def echo(self, value):
        return value

    def add(self, a, b):
        return a + b

    def get(self, id):
        if id == 1:
            return "one"
        raise NotFound(message="no such id", id=id)

    def fail(self, how):
        if how == "app":
            raise TApplicationException(TApplicationException.UNKNOWN, "told to")
        raise RuntimeError("boom: " + how)

    def note(self, text):
        self.notes.append(text)

    def last_note(self):
        return self.notes[-1] if self.notes else ""

    def headers(self):
        return dict(seen.headers)

    def trace(self):
        h = {k.lower(): v for k, v in seen.headers.items()}
        return "%s %s %s trace" % (h.get("trace"), h.get("span"), h.get("parent"))

    def budget(self):
        h = {k.lower(): v for k, v in seen.headers.items()}
        return float(h["deadline-budget"]) / 1000 if "deadline-budget" in h else -1.0

    def sleep(self, seconds):
        time.sleep(seconds)


if WHERE.isdigit():
    sock = TServerSocket(host="127.0.0.1", port=int(WHERE))
else:
    sock = TServerSocket(unix_socket=WHERE)
server = TThreadedServer(Processor(Handler()), sock, TTransportFactoryBase(), THeaderProtocolFactory(),
                         daemon=True)
sock.listen()
sock.listen = lambda: None  # serve() listens again
print("listening", flush=True)
server.serve()
