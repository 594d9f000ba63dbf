#!/usr/bin/env bash
# Compare the icount BENCH lines of a serial log with a baseline CSV (name,p50).
#   scripts/check-icount.sh <icount serial log> <baseline.csv> [--update]
# Under -icount shift=0 a tick is one guest instruction and runs repeat exactly, so a row
# whose p50 grows more than 10% over the baseline is a real regression. Only BENCH lines of
# icount suites count (a line belongs to the last SUITE line above it). A baseline row the
# log lacks fails too (a benchmark that broke loses its row: until 2026-12-04 that passed);
# a row the baseline lacks is reported as new. `boot.ms` (virtual milliseconds, not
# instructions) stays out. --update rewrites the baseline from the log.
set -euo pipefail
log=${1:?usage: check-icount.sh <log> <baseline.csv> [--update]}
base=${2:?usage: check-icount.sh <log> <baseline.csv> [--update]}
grep -q '^SUITE,.*,icount,' "$log" || { echo "check-icount: $log is not an icount run" >&2; exit 2; }
if [ "${3:-}" = --update ]; then
    { echo "name,p50"; awk -F, '/^SUITE,/ { mode = $5 } /^BENCH,/ && mode == "icount" && $2 != "boot.ms" && !seen[$2]++ { print $2 "," $7 }' "$log"; } > "$base"
    echo "check-icount: wrote $base"
    exit 0
fi
[ -f "$base" ] || { echo "check-icount: no baseline $base (run with --update)" >&2; exit 2; }
awk -F, '
    FNR == NR { if (FNR > 1) want[$1] = $2; next }
    /^SUITE,/ { mode = $5 }
    /^BENCH,/ && mode == "icount" && $2 != "boot.ms" { got[$2] = $7 }
    END {
        bad = 0
        for (n in want) {
            if (!(n in got)) { printf "MISSING   %-32s baseline %s\n", n, want[n]; bad++; continue }
            limit = want[n] * 1.10
            st = (got[n] > limit) ? "REGRESSED" : "ok"
            if (got[n] > limit) bad++
            printf "%-9s %-32s %8d (baseline %d)\n", st, n, got[n], want[n]
        }
        for (n in got) if (!(n in want)) printf "new       %-32s %8d\n", n, got[n]
        exit bad > 0
    }' "$base" "$log"
