"""A memcached stand-in that answers commands sent with noreply anyway, as
memcached does when a noreply command fails in some ways (an unknown
command's ERROR, an out-of-memory SERVER_ERROR on servers before 1.6):
every noreply command gets "SERVER_ERROR out of memory storing object",
sometimes at once, sometimes a little later, in pieces. The rest is a tiny
memcached: set/get/delete on a dict, version.

    python3 memcache_noreply_server.py PORT
"""
import random
import socket
import sys
import threading
import time


def serve(conn, store):
    buf = b""
    rnd = random.Random(0)

    def line():
        nonlocal buf
        while b"\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                raise EOFError
            buf += data
        ln, buf = buf.split(b"\r\n", 1)
        return ln

    def data(n):
        nonlocal buf
        while len(buf) < n + 2:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        d, buf = buf[:n], buf[n + 2:]
        return d

    def say(text):
        if rnd.random() < 0.3:  # in two pieces, a moment apart
            cut = rnd.randint(1, len(text) - 1)
            conn.sendall(text[:cut])
            time.sleep(0.002)
            conn.sendall(text[cut:])
        else:
            conn.sendall(text)

    try:
        while True:
            words = line().split(b" ")
            cmd, noreply = words[0], words[-1] == b"noreply"
            if cmd in (b"set", b"add", b"replace", b"append", b"prepend", b"cas"):
                value = data(int(words[4]))
                if noreply:
                    say(b"SERVER_ERROR out of memory storing object\r\n")
                else:
                    store[words[1]] = (words[2], value)
                    say(b"STORED\r\n")
            elif cmd in (b"delete", b"incr", b"decr", b"touch", b"flush_all"):
                if noreply:
                    say(b"SERVER_ERROR out of memory storing object\r\n")
                elif cmd == b"delete":
                    say(b"DELETED\r\n" if store.pop(words[1], None) else b"NOT_FOUND\r\n")
                else:
                    say(b"ERROR\r\n")
            elif cmd in (b"get", b"gets"):
                out = b""
                for k in words[1:]:
                    if k in store:
                        flags, value = store[k]
                        out += b"VALUE %s %s %d\r\n%s\r\n" % (k, flags, len(value), value)
                say(out + b"END\r\n")
            elif cmd == b"version":
                say(b"VERSION 0.0-noreply-stand-in\r\n")
            else:
                say(b"ERROR\r\n")
    except (EOFError, ConnectionError):
        pass
    finally:
        conn.close()


def main():
    port = int(sys.argv[1])
    store = {}
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn, store), daemon=True).start()


main()
