"""Call the example Greeter with Debian's python3-thrift (THeader, binary):

    /usr/bin/python3 examples/thrift/call.py [NAME] [PORT]
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
out = tempfile.mkdtemp()
atexit.register(shutil.rmtree, out, True)
subprocess.check_call(["thrift", "--gen", "py", "-out", out, os.path.join(here, "greeter.thrift")])
sys.path.insert(0, out)

from greeter import Greeter  # noqa: E402
from greeter.ttypes import InvalidName  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402
from thrift.transport.TSocket import TSocket  # noqa: E402

name = sys.argv[1] if len(sys.argv) > 1 else "World"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 9090
prot = THeaderProtocol(TSocket("127.0.0.1", port), [THeaderClientType.HEADERS])
prot.trans.open()
client = Greeter.Client(prot)
try:
    g = client.greet(name)
    print("%s (greeted %d times)" % (g.text, g.count))
except InvalidName as e:
    print("InvalidName: %s" % e.message)
