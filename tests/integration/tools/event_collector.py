"""An event collector stand-in for baseplate-event-publisher's tests.

    event_collector.py PORT_FILE OUT_FILE KEY_NAME KEY_B64 VERSION [STATUS...]

Checks every POST against formats.md "Events": the path /v{VERSION};
Content-Type application/json; Content-Encoding gzip and a body that is
one gzip member; a Date header in RFC 1123 form; a User-Agent; X-Signature
"key={KEY_NAME}, mac={hex HMAC-SHA256 of the uncompressed body}" with the
key KEY_B64 (base64); and the batch framing (v1: a JSON array of events;
v2: {"1":{"lst":["rec",N,e1,...]}} with N the number of events). A batch
that passes is appended to OUT_FILE as "BATCH <events as a JSON array>"; a
request that fails a check as "BAD <reason>" (and answered 400).

The STATUS arguments are the answers to the POSTs that pass, in order
(e.g. 503 503 200: two failures, then the batch is taken); once they are
used up, 200. An answer of 2xx records the batch; other answers record
"REPLIED <status>". The port is written to PORT_FILE when listening.
"""
import base64
import email.utils
import gzip
import hashlib
import hmac
import http.server
import json
import sys
import threading

PORT_FILE, OUT, KEY_NAME, KEY_B64, VERSION = sys.argv[1:6]
KEY = base64.b64decode(KEY_B64)
REPLIES = [int(s) for s in sys.argv[6:]]
LOCK = threading.Lock()


def record(line):
    with LOCK:
        with open(OUT, "a") as f:
            f.write(line + "\n")


def check(handler, raw):
    h = handler.headers
    if handler.path != "/v" + VERSION:
        return "path %s" % handler.path, None
    if h.get("Content-Type") != "application/json":
        return "content-type %s" % h.get("Content-Type"), None
    if h.get("Content-Encoding") != "gzip":
        return "content-encoding %s" % h.get("Content-Encoding"), None
    if not h.get("User-Agent"):
        return "no user-agent", None
    date = h.get("Date") or ""
    try:
        if email.utils.parsedate_to_datetime(date) is None or not date.endswith(" GMT"):
            raise ValueError(date)
    except Exception:
        return "date %r" % date, None
    try:
        body = gzip.decompress(raw)
    except Exception as e:
        return "not gzip: %s" % e, None
    want = "key=%s, mac=%s" % (KEY_NAME, hmac.new(KEY, body, hashlib.sha256).hexdigest())
    if h.get("X-Signature") != want:
        return "x-signature %r, want %r" % (h.get("X-Signature"), want), None
    try:
        doc = json.loads(body)
    except Exception as e:
        return "not JSON: %s" % e, None
    if VERSION == "1":
        if not isinstance(doc, list):
            return "v1 batch is not an array", None
        return None, doc
    if not (isinstance(doc, dict) and list(doc) == ["1"] and isinstance(doc["1"], dict)
            and list(doc["1"]) == ["lst"]):
        return "v2 framing: %s" % body[:80], None
    lst = doc["1"]["lst"]
    if not (isinstance(lst, list) and len(lst) >= 2 and lst[0] == "rec" and lst[1] == len(lst) - 2):
        return "v2 list header: %s" % body[:80], None
    if not body.startswith(b'{"1":{"lst":["rec",'):
        return "v2 framing bytes: %s" % body[:80], None
    return None, lst[2:]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, text=b"ok"):
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        why, evs = check(self, raw)
        if why:
            record("BAD " + why)
            return self.reply(400, why.encode())
        with LOCK:
            status = REPLIES.pop(0) if REPLIES else 200
        if 200 <= status < 300:
            record("BATCH " + json.dumps(evs, separators=(",", ":")))
        else:
            record("REPLIED %d %d" % (status, len(evs)))
        self.reply(status, b"collector says %d" % status)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402

os.rename(PORT_FILE + ".tmp", PORT_FILE)
srv.serve_forever()
