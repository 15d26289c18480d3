"""Zipkin v1 JSON spans as Baseplate.py writes them (formats.md): check_span(span) -> None or why not."""
import ipaddress
import time

U64 = 2 ** 64
KEYS = {"traceId", "name", "id", "timestamp", "duration", "parentId", "annotations", "binaryAnnotations"}


def check_endpoint(e):
    if not isinstance(e, dict) or set(e) != {"serviceName", "ipv4"}:
        return "endpoint must have exactly serviceName and ipv4"
    if not isinstance(e["serviceName"], str) or not e["serviceName"]:
        return "endpoint.serviceName must be a non-empty string"
    try:
        ipaddress.IPv4Address(e["ipv4"])
    except Exception:
        return "endpoint.ipv4 must be a dotted IPv4 address"
    return None


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_span(s):
    if not isinstance(s, dict):
        return "a span must be an object"
    if set(s) != KEYS:
        return "keys must be exactly %s, got %s" % (sorted(KEYS), sorted(s))
    for k in ("traceId", "id", "parentId"):
        if not is_int(s[k]) or not 0 <= s[k] < U64:
            return "%s must be an unsigned 64-bit integer" % k
    if s["traceId"] == 0 or s["id"] == 0:
        return "traceId and id must not be 0"
    if not isinstance(s["name"], str) or not s["name"]:
        return "name must be a non-empty string"
    now = time.time() * 1e6
    if not is_int(s["timestamp"]) or abs(s["timestamp"] - now) > 3600e6:
        return "timestamp must be integer microseconds since the epoch (now)"
    if not is_int(s["duration"]) or s["duration"] < 0 or s["duration"] > 600e6:
        return "duration must be non-negative integer microseconds"
    anns = s["annotations"]
    if not isinstance(anns, list):
        return "annotations must be a list"
    for a in anns:
        if not isinstance(a, dict) or set(a) != {"endpoint", "timestamp", "value"}:
            return "an annotation must have exactly endpoint, timestamp, value"
        if a["value"] not in ("sr", "ss", "cs", "cr"):
            return "annotation value %r" % a["value"]
        if not is_int(a["timestamp"]):
            return "annotation timestamp must be an integer"
        err = check_endpoint(a["endpoint"])
        if err:
            return err
    values = [a["value"] for a in anns]
    if values not in ([], ["sr", "ss"], ["cs", "cr"]):
        return "annotations must be [], sr/ss or cs/cr, got %s" % values
    if anns and (anns[0]["timestamp"] != s["timestamp"] or anns[1]["timestamp"] != s["timestamp"] + s["duration"]):
        return "annotation timestamps must be the span's start and end"
    bins = s["binaryAnnotations"]
    if not isinstance(bins, list):
        return "binaryAnnotations must be a list"
    for b in bins:
        if not isinstance(b, dict) or set(b) != {"key", "value", "endpoint"}:
            return "a binary annotation must have exactly key, value, endpoint"
        if not isinstance(b["key"], str) or not b["key"] or not isinstance(b["value"], str):
            return "binary annotation key and value must be strings"
        err = check_endpoint(b["endpoint"])
        if err:
            return err
    keys = [b["key"] for b in bins]
    if keys.count("component") != 1:
        return "one component binary annotation expected"
    if (values == []) != ("lc" in keys):
        return "local spans (no annotations) and only they have lc"
    return None
