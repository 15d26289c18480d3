"""POSIX message queues through libc (ctypes): the trace queue's other end.

    trace_queue.py create NAME MAXMSG   create /NAME holding at most MAXMSG messages
    trace_queue.py drain NAME OUT       append each waiting message to OUT, one a line,
                                        "INVALID <reason> <span>" if it is not a valid span
    trace_queue.py put NAME FILE        send each line of FILE as one message
    trace_queue.py unlink NAME
"""
import ctypes
import ctypes.util
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long),
                ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]


libc.mq_open.restype = ctypes.c_int
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Attr)]
libc.mq_receive.restype = ctypes.c_ssize_t
libc.mq_receive.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
libc.mq_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint]
O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_NONBLOCK = 0, 1, 2, 0o100, 0o4000


def opened(name, flags, attr=None):
    fd = libc.mq_open(("/" + name).encode(), flags, 0o644, ctypes.byref(attr) if attr else None)
    if fd < 0:
        sys.exit("mq_open /%s: %s" % (name, os.strerror(ctypes.get_errno())))
    return fd


cmd, name = sys.argv[1], sys.argv[2]
if cmd == "create":
    attr = Attr(0, int(sys.argv[3]), 8192, 0)
    libc.mq_unlink(("/" + name).encode())
    opened(name, O_RDWR | O_CREAT, attr)
elif cmd == "drain":
    from zipkin_sink_check import check_span
    fd = opened(name, O_RDONLY | O_NONBLOCK)
    buf = ctypes.create_string_buffer(102400)
    with open(sys.argv[3], "a") as out:
        while True:
            n = libc.mq_receive(fd, buf, 102400, None)
            if n < 0:
                break
            span = json.loads(buf.raw[:n])
            err = check_span(span)
            j = json.dumps(span, sort_keys=True)
            out.write(("INVALID %s %s" % (err, j) if err else j) + "\n")
elif cmd == "put":
    fd = opened(name, O_WRONLY)
    for line in open(sys.argv[3], "rb").read().splitlines():
        if libc.mq_send(fd, line, len(line), 0) != 0:
            sys.exit("mq_send: %s" % os.strerror(ctypes.get_errno()))
elif cmd == "unlink":
    libc.mq_unlink(("/" + name).encode())
