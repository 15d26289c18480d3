# Shared by the benchmarks (sourced): ports, a server's CPU time, one
# wrk measurement, medians, and the side-by-side comparison. Expects TMP
# (a scratch directory) and DURATION (seconds per measurement).

# A TCP port nothing listens on.
free_port() {
  local p
  while :; do
    p=$((30000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# A process's CPU time (user + system, clock ticks) from /proc.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# wrk_run PORT CONNECTIONS PID: wrk (one thread, CPU 1, keep-alive) for
# DURATION -> "requests/s p50_ms p99_ms non2xx cpu_us_per_request", the last
# being the CPU time the server (PID) spent per request.
wrk_run() {
  local t0 t1
  t0=$(cpu_ticks "$3")
  taskset -c 1 wrk -t1 -c"$2" -d"${DURATION}s" --latency "http://127.0.0.1:$1/" > "$TMP/wrk.out"
  t1=$(cpu_ticks "$3")
  awk -v ticks=$((t1 - t0)) -v tick_us="$TICK_US" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    /requests in/ { n = $1 }
    END { printf "%.0f %.3f %.3f %s %.2f\n", rps, p50, p99, bad + 0, ticks * tick_us / n }' "$TMP/wrk.out"
}

# side_load PORT OUTFILE: the load side_by_side puts on one server (wrk, one
# thread, CPU 1, SIDE_CONNS connections (50), DURATION); side_count OUTFILE:
# how many requests it made. A benchmark of another protocol redefines both.
side_load() { taskset -c 1 wrk -t1 -c"${SIDE_CONNS:-50}" -d"${DURATION}s" "http://127.0.0.1:$1/" > "$2"; }
side_count() { awk '/requests in/ { print $1 }' "$1"; }

# side_by_side ROUNDS NAME_A PORT_A PID_A NAME_B PORT_B PID_B: both servers
# loaded at once (side_load on each, both on CPU 1), ROUNDS times; prints
# the CPU time each spent per request and the ratio A/B of each round, then
# their median. Whatever state the machine is in, both see it, which runs
# taken one after the other cannot promise.
side_by_side() {
  local rounds=$1 na=$2 pa=$3 ida=$4 nb=$5 pb=$6 idb=$7 r a0 b0 a1 b1 wa wb
  : > "$TMP/side"
  for r in $(seq 1 "$rounds"); do
    a0=$(cpu_ticks "$ida"); b0=$(cpu_ticks "$idb")
    side_load "$pa" "$TMP/side.a" &
    wa=$!
    side_load "$pb" "$TMP/side.b" &
    wb=$!
    wait "$wa" "$wb"
    a1=$(cpu_ticks "$ida"); b1=$(cpu_ticks "$idb")
    awk -v r="$r" -v na="$na" -v nb="$nb" -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v tu="$TICK_US" \
      -v an="$(side_count "$TMP/side.a")" -v bn="$(side_count "$TMP/side.b")" 'BEGIN {
      x = a * tu / an; y = b * tu / bn
      printf "round %s: %s %.2f, %s %.2f, ratio %.3f\n", r, na, x, nb, y, x / y
      printf "%f\n", x / y >> "'"$TMP/side"'" }'
  done
  printf 'median CPU per request ratio side by side (%s/%s, < 1 is cheaper): %.3f\n' "$na" "$nb" "$(median < "$TMP/side")"
}
