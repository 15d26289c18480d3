"""A python3-thrift client (Debian's, /usr/bin/python3) for the server
timeout checks of tests/integration/test-server-timeout-redis.sh:

    thrift_timeout_client.py PORT IDL_DIR

The service (tests/integration/apps/thriftapp.lua) runs with
server_timeout.by_endpoint.sleep = 200 milliseconds: a call of sleep(2)
gets a TApplicationException naming the timeout after about 0.2 s, and the
same connection then serves the next calls. Prints "ok"/"FAILED" lines and
"N passed, M failed".
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import atexit

PORT = int(sys.argv[1])
IDL_DIR = sys.argv[2]
OUT = tempfile.mkdtemp(prefix="bp-thrift-py.")
atexit.register(shutil.rmtree, OUT, True)
subprocess.check_call(["thrift", "-r", "--gen", "py", "-out", OUT, os.path.join(IDL_DIR, "testsvc.thrift")])
sys.path.insert(0, OUT)

from testsvc import Test  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.protocol.TBinaryProtocol import TBinaryProtocol  # noqa: E402
from thrift.Thrift import TApplicationException  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402
from thrift.transport.TSocket import TSocket  # noqa: E402
from thrift.transport.TTransport import TFramedTransport  # noqa: E402
from checklib import check, finish  # noqa: E402


def connect(mode):
    sock = TSocket("127.0.0.1", PORT)
    sock.setTimeout(5000)
    if mode == "header":
        prot = THeaderProtocol(sock, [THeaderClientType.HEADERS])
        trans = prot.trans
    else:
        trans = TFramedTransport(sock)
        prot = TBinaryProtocol(trans)
    trans.open()
    return Test.Client(prot), trans


for mode in ("header", "framed"):
    client, trans = connect(mode)
    t0 = time.monotonic()
    err = None
    try:
        client.sleep(2.0)
    except TApplicationException as e:
        err = e
    took = time.monotonic() - t0
    check(mode + ": a call past its time gets a TApplicationException", type(err).__name__, "TApplicationException")
    check(mode + ": of type INTERNAL_ERROR", getattr(err, "type", None), TApplicationException.INTERNAL_ERROR)
    check(mode + ": naming the timeout", getattr(err, "message", None),
          "Server timed out processing for 'sleep' after 0.20 seconds")
    check(mode + ": after about 0.2 s", 0.15 < took < 1.0, True)
    check(mode + ": the connection serves the next call", client.add(2, 3), 5)
    client.sleep(0.01)
    check(mode + ": a call within its time succeeds", client.whoami(), "thriftapp")
    trans.close()
finish()
