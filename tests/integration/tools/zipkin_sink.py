"""A Zipkin collector stand-in: records the spans POSTed to /api/v1/spans.

    zipkin_sink.py PORT_FILE OUT_FILE [STATUS [PATH]]

Each span is checked field by field against Zipkin v1 JSON as Baseplate.py
writes it (formats.md, "Zipkin spans"): a valid one is appended to OUT_FILE
as one JSON line, an invalid one as "INVALID <reason> <span>". Requests
that are not a POST of a JSON array with Content-Type application/json are
recorded as "BADREQUEST <reason>". Answers STATUS (default 202). OUT_FILE
"-" reads and discards what comes (for benchmarks). With PATH /v1/traces
it is an OpenTelemetry collector: OTLP/HTTP JSON requests, each span
checked against the OTLP JSON mapping.
"""
import http.server
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zipkin_sink_check import check_otlp_request, check_otlp_span, check_span


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        lines = []
        if OUT == "-":  # (benchmarks: read and discard)
            pass
        elif self.path != PATH:
            lines.append("BADREQUEST path %s" % self.path)
        elif self.headers.get("Content-Type") != "application/json":
            lines.append("BADREQUEST content-type %s" % self.headers.get("Content-Type"))
        else:
            try:
                spans = json.loads(body)
            except Exception as e:
                spans = None
                lines.append("BADREQUEST not JSON: %s" % e)
            if spans is not None and PATH == "/v1/traces":  # OTLP/HTTP JSON
                spans, why = check_otlp_request(spans)
                if why:
                    lines.append("BADREQUEST %s" % why)
                else:
                    lines.append("BATCH %d" % len(spans))
                    for s in spans:
                        err = check_otlp_span(s)
                        j = json.dumps(s, sort_keys=True)
                        lines.append("INVALID %s %s" % (err, j) if err else j)
                spans = None
            if spans is not None and not isinstance(spans, list):
                lines.append("BADREQUEST not a JSON array")
            elif spans is not None:
                lines.append("BATCH %d" % len(spans))
                for s in spans:
                    err = check_span(s)
                    j = json.dumps(s, sort_keys=True)
                    lines.append("INVALID %s %s" % (err, j) if err else j)
        if lines:
            with LOCK, open(OUT, "a") as f:
                f.write("".join(l + "\n" for l in lines))
        self.send_response(STATUS)
        self.send_header("Content-Length", "0")
        self.end_headers()


LOCK = threading.Lock()
PORT_FILE, OUT = sys.argv[1], sys.argv[2]
STATUS = int(sys.argv[3]) if len(sys.argv) > 3 else 202
PATH = sys.argv[4] if len(sys.argv) > 4 else "/api/v1/spans"
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
srv.serve_forever()
