"""What the Python test tools share: one "ok"/"FAILED" line per check, and
"N passed, M failed" with the exit status at the end (as lib.sh's shell
checks print them)."""
import sys

_counts = {"passed": 0, "failed": 0}


def check(name, got, want):
    if got == want:
        _counts["passed"] += 1
        print("ok     " + name)
    else:
        _counts["failed"] += 1
        print("FAILED " + name)
        print("  got:  %r" % (got,))
        print("  want: %r" % (want,))


def finish():
    print("%d passed, %d failed" % (_counts["passed"], _counts["failed"]))
    sys.exit(1 if _counts["failed"] else 0)
