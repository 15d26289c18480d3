"""Queries on what zipkin_sink.py recorded: spans.py OUT QUERY [ARGS]."""
import json
import sys

out, query, args = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = open(out).read().splitlines()
spans = [json.loads(l) for l in lines if l.startswith("{")]


def bins(s):
    return {b["key"]: b["value"] for b in s["binaryAnnotations"]}


def brief(s):
    kind = "local" if not s["annotations"] else ("server" if s["annotations"][0]["value"] == "sr" else "client")
    b = bins(s)
    del b["component"]
    return "%s %s %s" % (kind, s["name"], ",".join("%s=%s" % (k, v.encode("unicode_escape").decode()) for k, v in sorted(b.items())))


if query == "invalid":  # schema violations and bad requests
    print("\n".join(l for l in lines if l.startswith(("INVALID", "BADREQUEST"))))
elif query == "count":
    print(len(spans))
elif query == "brief":  # one line per span, sorted
    print("\n".join(sorted(brief(s) for s in spans)))
elif query == "traces":  # distinct trace IDs
    print(len({s["traceId"] for s in spans}))
elif query == "batches":
    print(sum(1 for l in lines if l.startswith("BATCH")))
elif query == "family":  # one trace's parentage: every parentId is a span of it, or the root's 0
    ids = {s["id"]: s for s in spans}
    tids = {s["traceId"] for s in spans}
    roots = [s for s in spans if s["parentId"] == 0]
    orphans = [s["name"] for s in spans if s["parentId"] != 0 and s["parentId"] not in ids]
    print("traces=%d roots=%s orphans=%s" % (len(tids), [r["name"] for r in roots], orphans))
elif query == "parent":  # parent's name and service of span NAME@SERVICE
    name, svc = args[0].split("@")
    ids = {s["id"]: s for s in spans}
    s = [s for s in spans if s["name"] == name and s["annotations"][0]["endpoint"]["serviceName"] == svc][0]
    p = ids.get(s["parentId"])
    print("%s@%s" % (p["name"], p["annotations"][0]["endpoint"]["serviceName"]) if p else "none")
elif query == "field":  # the field of the span named NAME
    s = [s for s in spans if s["name"] == args[0]][0]
    print(json.dumps(s[args[1]]))
