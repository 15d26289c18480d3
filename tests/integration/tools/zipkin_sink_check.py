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


def check_otlp_value(v):
    if not isinstance(v, dict) or len(v) != 1:
        return "an attribute value must have exactly one member"
    (k, x), = v.items()
    if k == "stringValue" and isinstance(x, str):
        return None
    if k == "boolValue" and isinstance(x, bool):
        return None
    if k == "intValue" and isinstance(x, str) and x.lstrip("-").isdigit():
        return None
    if k == "doubleValue" and isinstance(x, (int, float)) and not isinstance(x, bool):
        return None
    return "bad attribute value %r" % v


def is_hex(v, n):
    return isinstance(v, str) and len(v) == n and all(c in "0123456789abcdef" for c in v) and v != "0" * n


def check_otlp_span(s):
    """An OTLP/HTTP JSON span (opentelemetry-proto's JSON mapping)."""
    allowed = {"traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano",
               "endTimeUnixNano", "attributes", "status"}
    if not isinstance(s, dict) or not set(s) <= allowed:
        return "unknown keys %s" % sorted(set(s) - allowed)
    if not is_hex(s.get("traceId"), 32) or not is_hex(s.get("spanId"), 16):
        return "traceId / spanId must be 32 / 16 lowercase hex digits, not all zero"
    if "parentSpanId" in s and not is_hex(s["parentSpanId"], 16):
        return "parentSpanId must be 16 hex digits"
    if not isinstance(s.get("name"), str) or not s["name"]:
        return "name must be a non-empty string"
    if s.get("kind") not in (1, 2, 3):
        return "kind must be INTERNAL, SERVER or CLIENT"
    for k in ("startTimeUnixNano", "endTimeUnixNano"):
        if not isinstance(s.get(k), str) or not s[k].isdigit():
            return "%s must be a decimal string" % k
    if abs(int(s["startTimeUnixNano"]) / 1e9 - time.time()) > 3600 or int(s["endTimeUnixNano"]) < int(s["startTimeUnixNano"]):
        return "times must be now, the end after the start"
    if not isinstance(s.get("attributes"), list):
        return "attributes must be a list"
    for a in s["attributes"]:
        if not isinstance(a, dict) or set(a) != {"key", "value"} or not isinstance(a["key"], str):
            return "an attribute must have exactly key and value"
        err = check_otlp_value(a["value"])
        if err:
            return err
    if "status" in s and (not isinstance(s["status"], dict) or s["status"].get("code") not in (0, 1, 2)):
        return "bad status"
    return None


def check_otlp_request(body):
    """The spans of an ExportTraceServiceRequest, or a reason it is not one."""
    if not isinstance(body, dict) or set(body) != {"resourceSpans"} or not isinstance(body["resourceSpans"], list):
        return None, "the body must be {resourceSpans: [...]}"
    spans = []
    for rs in body["resourceSpans"]:
        attrs = rs.get("resource", {}).get("attributes", [])
        if not any(a.get("key") == "service.name" and "stringValue" in a.get("value", {}) for a in attrs):
            return None, "resource without service.name"
        for ss in rs.get("scopeSpans", []):
            if not isinstance(ss.get("scope", {}).get("name"), str):
                return None, "scope without a name"
            spans.extend(ss.get("spans", []))
    return spans, None
