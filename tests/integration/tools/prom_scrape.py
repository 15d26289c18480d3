"""Scrape a Prometheus endpoint and read it with prometheus_client's own
text-format parser (python3-prometheus-client), not ours.

URL may be file:PATH, a scrape saved earlier (several checks of one moment).

    prom_scrape.py URL SAMPLE [LABEL=VALUE...]   print the sum of the samples
                                                 named SAMPLE whose labels match
    prom_scrape.py URL --check                   check the exposition: every
                                                 histogram's buckets are
                                                 cumulative and end in +Inf equal
                                                 to _count; print "valid"
Exit status 1 with the reason on a parse error."""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        # (a file: URL is a scrape saved earlier)
        if not url.startswith("file:") and not ctype.startswith("text/plain; version=0.0.4"):
            raise SystemExit("unexpected Content-Type: %r" % ctype)
        return list(text_string_to_metric_families(r.read().decode("utf-8")))


def check(families):
    for f in families:
        if f.type != "histogram":
            continue
        groups = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            groups.setdefault(key, {"buckets": [], "count": None})
            if s.name.endswith("_bucket"):
                groups[key]["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                groups[key]["count"] = s.value
        for key, g in groups.items():
            values = [v for _, v in sorted(g["buckets"])]
            if values != sorted(values):
                raise SystemExit("%s %s: buckets are not cumulative" % (f.name, key))
            if not g["buckets"] or sorted(g["buckets"])[-1][0] != float("inf"):
                raise SystemExit("%s %s: no +Inf bucket" % (f.name, key))
            if values[-1] != g["count"]:
                raise SystemExit("%s %s: +Inf %s != _count %s" % (f.name, key, values[-1], g["count"]))
    print("valid")


def main():
    url, what = sys.argv[1], sys.argv[2]
    try:
        families = scrape(url)
    except ValueError as e:
        raise SystemExit("parse error: %s" % e)
    if what == "--check":
        check(families)
        return
    want = dict(a.split("=", 1) for a in sys.argv[3:])
    total = 0
    for f in families:
        for s in f.samples:
            if s.name == what and all(s.labels.get(k) == v for k, v in want.items()):
                total += s.value
    print(int(total) if total == int(total) else total)


main()
