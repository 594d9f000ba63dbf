#!/usr/bin/env bash
# Extracts the BENCH lines of an Exo-OS serial log into a CSV.
#
#   scripts/extract-benches.sh <serial.log> [out.csv]      (default out: bench_results.csv)
#
# Output header: suite,mode,name,n,mean,min,max,p50,p95,p99
# suite and mode come from the latest SUITE line before each BENCH line (empty if none).
# CRLF line ends are accepted; other lines are ignored; BENCH lines with the wrong field
# count, non-integer fields or inconsistent statistics are skipped with a warning. Exits 1 (and leaves out.csv
# untouched) when the log holds no valid BENCH line, 2 on usage errors.
# Needs only bash and a POSIX awk.
set -euo pipefail

usage() { echo "usage: $0 <serial.log> [out.csv]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
log=$1
out=${2:-bench_results.csv}
[ -f "$log" ] && [ -r "$log" ] || { echo "extract-benches: cannot read '$log'" >&2; exit 2; }

tmp=$(mktemp "${out}.XXXXXX") || { echo "extract-benches: cannot write next to '$out'" >&2; exit 2; }
trap 'rm -f "$tmp"' EXIT

status=0
awk -F',' -v OFS=',' '
BEGIN { print "suite,mode,name,n,mean,min,max,p50,p95,p99"; suite = ""; mode = ""; count = 0; bad = 0 }
{ sub(/\r+$/, "") }
/^SUITE,/ {
    if (NF >= 8) { suite = $2; mode = $5; insuite[suite] = 1; seen[suite] = 0 }
    next
}
/^END,/ {
    if (NF == 3 && ($2 in seen) && seen[$2] != $3)
        printf "extract-benches: suite %s: END says %s results, log has %d\n", $2, $3, seen[$2] > "/dev/stderr"
    if (NF == 3) delete insuite[$2]
    next
}
/^BENCH,/ {
    ok = (NF == 9 && $2 != "")
    for (i = 3; ok && i <= 9; i++) if ($i !~ /^[0-9]+$/) ok = 0
    if (!ok) { bad++; next }
    # The report refuses a whole CSV over one inconsistent row (n >= 1, min <= p50 <= p95
    # <= p99 <= max, min <= mean <= max): such a row (a run with no request, say) is
    # skipped here with its name instead (until 2026-12-04 it stopped `just run` after
    # every QEMU run; found by review).
    if (!($3 >= 1 && $5 <= $7 && $7 <= $8 && $8 <= $9 && $9 <= $6 && $5 <= $4 && $4 <= $6)) {
        printf "extract-benches: skipped %s: inconsistent statistics\n", $2 > "/dev/stderr"
        bad++
        next
    }
    print suite, mode, $2, $3, $4, $5, $6, $7, $8, $9
    count++
    if (suite in seen) seen[suite]++
}
END {
    for (s in insuite) printf "extract-benches: suite %s has no END line (run cut short?)\n", s > "/dev/stderr"
    if (bad > 0) printf "extract-benches: skipped %d malformed BENCH line(s)\n", bad > "/dev/stderr"
    if (count == 0) exit 3
    printf "extract-benches: %d result(s)\n", count > "/dev/stderr"
}
' "$log" > "$tmp" || status=$?

if [ "$status" -eq 3 ]; then
    echo "extract-benches: no BENCH line in '$log'" >&2
    exit 1
elif [ "$status" -ne 0 ]; then
    echo "extract-benches: awk failed ($status)" >&2
    exit 1
fi
mv -f "$tmp" "$out"
trap - EXIT
echo "extract-benches: wrote $out" >&2
