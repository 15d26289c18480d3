"""A hostile HTTP client for tests/integration/test-hostile.sh.

    hostile.py PORT close-early PATH N       send a request for PATH, close at once; N times
    hostile.py PORT raw REQUEST [SECONDS]    send REQUEST (Python escapes: \\r\\n, \\x00;
                                             @FILE: the bytes of FILE),
                                             half-close, print what comes back
    hostile.py PORT status REQUEST           the status code of the answer (or "reset"/"closed")
    hostile.py PORT big-upload LENGTH SECONDS  announce a body of LENGTH bytes, keep sending
                                             until the answer comes; print "status <code>"
                                             and "reset" if the connection was reset before
                                             the answer was read
    hostile.py PORT send-then-read REQUEST EXTRA   send REQUEST and EXTRA bytes of "x" without
                                             reading, wait 0.5 s, then read: print the status
                                             and how the connection ended ("eof" or "reset")
    hostile.py PORT trickle-body SECONDS     a body sent one byte every 0.5 s: print the
                                             status and how long the server waited
    hostile.py PORT hold N SECONDS           open N idle connections, hold them SECONDS
    hostile.py PORT memory PID N             the server's memory: N keep-alive connections
                                             after one request each, idle for 2.5 s (bytes
                                             of RSS each, after a full Lua collection),
                                             then N more that flood in with half a request
                                             each and close (KB of RSS kept)
"""
import socket
import sys
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s, seconds):
    s.settimeout(seconds)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        out += b"\n<reset>"
    return out


def unescape(text):
    if text.startswith("@"):  # a file of raw bytes (arguments have a size limit)
        with open(text[1:], "rb") as f:
            return f.read()
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def status_of(reply):
    if reply.startswith(b"HTTP/"):
        return reply.split(b" ", 2)[1].decode()
    if b"<reset>" in reply:
        return "reset"
    return "closed" if not reply else "garbage"


def main():
    port, cmd, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if cmd == "close-early":
        for _ in range(int(args[1])):
            s = connect(port)
            s.sendall(b"GET " + args[0].encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            s.close()
            time.sleep(0.05)
    elif cmd in ("raw", "status"):
        s = connect(port)
        s.sendall(unescape(args[0]))
        s.shutdown(socket.SHUT_WR)
        reply = read_all(s, float(args[1]) if len(args) > 1 else 5)
        if cmd == "raw":
            sys.stdout.write(reply.decode("latin-1"))
        else:
            print(status_of(reply))
    elif cmd == "big-upload":
        length, seconds = int(args[0]), float(args[1])
        s = connect(port)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length)
        s.setblocking(False)
        chunk, sent, reply, deadline = b"x" * 65536, 0, b"", time.time() + seconds
        reset = False
        while time.time() < deadline:
            try:
                if sent < length:
                    sent += s.send(chunk[: length - sent])
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                reset = True
                break
            try:
                data = s.recv(65536)
                if not data:
                    break
                reply += data
                if b"\r\n\r\n" in reply:
                    break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                reset = True
                break
        if not reply and not reset:
            s.setblocking(True)
            reply = read_all(s, 2)
            reset = b"<reset>" in reply
        print("status", status_of(reply) if reply else "none")
        if reset:
            print("reset")
    elif cmd == "send-then-read":
        s = connect(port)
        s.settimeout(2)
        data, sent = unescape(args[0]) + b"x" * int(args[1]), 0
        try:
            while sent < len(data):
                sent += s.send(data[sent:])
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass
        time.sleep(0.5)
        reply = read_all(s, 3)
        print(status_of(reply), "reset" if b"<reset>" in reply else "eof")
    elif cmd == "trickle-body":
        s = connect(port)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        start, reply = time.time(), b""
        s.settimeout(0.5)
        while time.time() - start < float(args[0]):
            try:
                s.send(b"x")
            except OSError:
                break
            try:
                data = s.recv(65536)
                if not data:
                    break
                reply += data
                if b"\r\n\r\n" in reply:
                    break
            except socket.timeout:
                pass
            except OSError:
                break
        print(status_of(reply), "after %.0fs" % (time.time() - start))
    elif cmd == "memory":
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        pid, n = int(args[0]), int(args[1])

        def rss():
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])

        def idle_round():
            conns = []
            for _ in range(n):
                c = connect(port)
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                conns.append(c)
            for c in conns:
                c.recv(4096)
            time.sleep(2.5)
            return conns

        # a first round warms the server up (the Lua heap's high-water mark,
        # the allocator's arenas, JIT traces): what it keeps is no
        # connection's
        for c in idle_round():
            c.close()
        time.sleep(2.5)
        def collect():
            # the requests' garbage in the Lua heap is no connection's:
            # the test app's /gc runs a full collection
            c = connect(port)
            c.sendall(b"GET /gc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            read_all(c, 5)
            c.close()
            time.sleep(0.2)

        collect()
        base = rss()
        conns = idle_round()
        collect()
        print("idle connection: %d bytes" % ((rss() - base) * 1024 // n))
        for c in conns:
            c.close()
        conns = []
        for _ in range(n):
            c = connect(port)
            c.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n" + b"x" * 10000)
            conns.append(c)
        time.sleep(0.5)
        for c in conns:
            c.close()
        time.sleep(2.5)
        print("after a flood of %d: %d KB kept" % (n, rss() - base))
    elif cmd == "hold":
        conns = [connect(port) for _ in range(int(args[0]))]
        time.sleep(float(args[1]))
        for c in conns:
            c.close()
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
