"""A stand-in for Sentry's ingestion API (tests/integration/test-sentry.sh):

    sentry_sink.py PORT_FILE OUT_FILE CONTROL_DIR

Listens on 127.0.0.1 (a free port, written to PORT_FILE), accepts POSTs to
/api/{project}/envelope/ and /api/{project}/store/, and checks each event
field by field against Sentry's event payload schema (develop.sentry.dev:
"Event Payloads", "Envelopes", "Authentication"). Every request becomes one
JSON line in OUT_FILE: {"path", "auth" (the parsed X-Sentry-Auth),
"event", "problems" (schema violations, empty when valid), "status"}.

CONTROL_DIR/429 (its content: the Retry-After value) makes the next
request answer 429 with that header (the file is removed); CONTROL_DIR/hang
makes every request wait 30 s before answering, CONTROL_DIR/slow (its
content: seconds) that long.
"""
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_FILE, OUT_FILE, CONTROL = sys.argv[1], sys.argv[2], sys.argv[3]
LOCK = threading.Lock()

PLATFORMS = {"as3", "c", "cfml", "cocoa", "csharp", "elixir", "haskell", "go", "groovy", "java",
             "javascript", "native", "node", "objc", "other", "perl", "php", "python", "ruby"}
LEVELS = {"fatal", "error", "warning", "info", "debug"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def is_str(v):
    return isinstance(v, str)


def check_event(ev):
    """Violations of the event payload schema (a list of strings)."""
    p = []

    def need(cond, what):
        if not cond:
            p.append(what)

    need(isinstance(ev, dict), "the event is an object")
    if not isinstance(ev, dict):
        return p
    need(is_str(ev.get("event_id")) and HEX32.match(ev["event_id"]), "event_id: 32 lowercase hex digits")
    ts = ev.get("timestamp")
    need((isinstance(ts, (int, float)) and not isinstance(ts, bool) and abs(ts - time.time()) < 600)
         or (is_str(ts) and RFC3339.match(ts)), "timestamp: a recent Unix time or RFC 3339")
    need(ev.get("platform") in PLATFORMS, "platform: one of Sentry's platforms")
    need(ev.get("level", "error") in LEVELS, "level: fatal/error/warning/info/debug")
    for k in ("logger", "transaction", "server_name", "release", "environment"):
        if k in ev:
            need(is_str(ev[k]) and ev[k] != "", k + ": a non-empty string")
    if "environment" in ev:
        need(len(ev["environment"]) <= 64 and "/" not in ev["environment"] and "\n" not in ev["environment"],
             "environment: at most 64 characters, no slash or newline")
    if "tags" in ev:
        t = ev["tags"]
        need(isinstance(t, dict), "tags: an object")
        if isinstance(t, dict):
            for k, v in t.items():
                need(is_str(k) and 0 < len(k) <= 200 and is_str(v) and 0 < len(v) <= 200 and "\n" not in v,
                     "tags: %r -> a string of 1-200 characters" % k)
    sdk = ev.get("sdk")
    if sdk is not None:
        need(isinstance(sdk, dict) and is_str(sdk.get("name")) and is_str(sdk.get("version")),
             "sdk: name and version strings")
    if "message" in ev:
        m = ev["message"]
        need(is_str(m) or (isinstance(m, dict) and is_str(m.get("formatted"))), "message: formatted string")
    if "exception" in ev:
        ex = ev["exception"]
        values = ex.get("values") if isinstance(ex, dict) else None
        need(isinstance(values, list) and len(values) > 0, "exception.values: a non-empty list")
        for v in values or []:
            need(isinstance(v, dict) and (is_str(v.get("type")) or is_str(v.get("value"))),
                 "exception: type or value")
            if "mechanism" in v:
                need(isinstance(v["mechanism"], dict) and is_str(v["mechanism"].get("type"))
                     and isinstance(v["mechanism"].get("handled", True), bool), "mechanism: type, handled")
            st = v.get("stacktrace")
            if st is None:
                continue
            frames = st.get("frames") if isinstance(st, dict) else None
            need(isinstance(frames, list) and len(frames) > 0, "stacktrace.frames: a non-empty list")
            for f in frames or []:
                need(isinstance(f, dict) and (is_str(f.get("filename")) or is_str(f.get("function"))),
                     "frame: filename or function")
                if not isinstance(f, dict):
                    continue
                if "lineno" in f:
                    need(isinstance(f["lineno"], int) and f["lineno"] > 0, "frame.lineno: a positive integer")
                for k in ("filename", "abs_path", "function", "context_line"):
                    if k in f:
                        need(is_str(f[k]), "frame.%s: a string" % k)
                for k in ("pre_context", "post_context"):
                    if k in f:
                        need(isinstance(f[k], list) and all(is_str(x) for x in f[k]), "frame.%s: strings" % k)
                if "in_app" in f:
                    need(isinstance(f["in_app"], bool), "frame.in_app: a boolean")
    need("exception" in ev or "message" in ev, "an exception or a message")
    if "request" in ev:
        r = ev["request"]
        need(isinstance(r, dict), "request: an object")
        if isinstance(r, dict):
            need(is_str(r.get("method")) and is_str(r.get("url")), "request: method and url")
            need("cookies" not in r and "data" not in r, "request: no cookies, no body")
            for h in (r.get("headers") or {}):
                need(h.lower() not in ("cookie", "authorization"), "request: no Cookie/Authorization header")
    return p


def parse_auth(value):
    if not value or not value.startswith("Sentry "):
        return None
    out = {}
    for part in value[len("Sentry "):].split(","):
        k, _, v = part.strip().partition("=")
        out[k] = v
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if os.path.exists(os.path.join(CONTROL, "hang")):
            time.sleep(30)
        slow = os.path.join(CONTROL, "slow")
        if os.path.exists(slow):
            with open(slow) as f:
                time.sleep(float(f.read().strip() or 0))
        problems = []
        event = None
        m = re.match(r"^/api/(\d+)/(envelope|store)/$", self.path)
        if not m:
            problems.append("path: /api/{project}/envelope/ or /store/")
        elif m.group(2) == "envelope":
            lines = body.split(b"\n")
            try:
                head = json.loads(lines[0])
                item = json.loads(lines[1])
                length = item.get("length")
                rest = b"\n".join(lines[2:])
                payload = rest[:length] if length is not None else lines[2]
                if length is not None and len(payload) != length:
                    problems.append("envelope: item length")
                event = json.loads(payload)
                if item.get("type") != "event":
                    problems.append("envelope: item type event")
                if head.get("event_id") != event.get("event_id"):
                    problems.append("envelope: header event_id is the event's")
                if "dsn" in head and ":" in head["dsn"].split("@")[0].split("//")[-1]:
                    problems.append("envelope: no secret in the header's dsn")
            except Exception as e:  # noqa: BLE001
                problems.append("envelope: %s" % e)
            if self.headers.get("Content-Type") != "application/x-sentry-envelope":
                problems.append("envelope: Content-Type application/x-sentry-envelope")
        else:
            try:
                event = json.loads(body)
            except Exception as e:  # noqa: BLE001
                problems.append("store: %s" % e)
        auth = parse_auth(self.headers.get("X-Sentry-Auth"))
        if auth is None:
            problems.append("X-Sentry-Auth: Sentry key=value, ...")
        else:
            if auth.get("sentry_version") != "7":
                problems.append("X-Sentry-Auth: sentry_version=7")
            if not auth.get("sentry_key"):
                problems.append("X-Sentry-Auth: sentry_key")
            if not auth.get("sentry_client"):
                problems.append("X-Sentry-Auth: sentry_client")
        if event is not None:
            problems += check_event(event)
        status, headers = 200, {}
        ctl = os.path.join(CONTROL, "429")
        if os.path.exists(ctl):
            with open(ctl) as f:
                headers["Retry-After"] = f.read().strip()
            os.unlink(ctl)
            status = 429
        with LOCK:
            with open(OUT_FILE, "a") as f:
                f.write(json.dumps({"path": self.path, "auth": auth, "event": event, "problems": problems,
                                    "status": status, "time": time.time()}) + "\n")
        out = json.dumps({"id": (event or {}).get("event_id")}).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
