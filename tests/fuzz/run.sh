#!/usr/bin/env bash
# Run one fuzz target: replay its checked-in corpus, then fuzz for SECONDS.
#
#   tests/fuzz/run.sh BINARY SECONDS WORKDIR [libFuzzer flags...]
#
# New inputs go to WORKDIR/<target>/corpus (never into tests/fuzz/corpus:
# seeds are added there by hand), crashes to WORKDIR/<target>/. Exits
# non-zero when the target finds a crash, a leak or a hang.
set -euo pipefail
bin=$1 seconds=$2 work=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
name=$(basename "$bin")
name=${name#fuzz-}
seeds=$here/corpus/$name
mkdir -p "$work/$name/corpus"
flags=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
  -artifact_prefix="$work/$name/")
[ -f "$here/$name.dict" ] && flags+=(-dict="$here/$name.dict")
# The first directory is where new finds are written; the seeds are read only.
exec "$bin" "${flags[@]}" "$@" "$work/$name/corpus" "$seeds"
