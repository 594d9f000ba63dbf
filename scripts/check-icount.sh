#!/usr/bin/env bash
# Compare the icount BENCH lines of a serial log with a baseline CSV (name,p50).
#   scripts/check-icount.sh <icount serial log> <baseline.csv> [--update]
# Under -icount shift=0 a tick is one guest instruction and runs repeat exactly, so a row
# whose p50 grows more than 10% over the baseline is a real regression. Only BENCH lines of
# icount suites count (a line belongs to the last SUITE line above it). A baseline row the
# log lacks fails too (a benchmark that broke loses its row: until 2026-12-04 that passed);
# a row the baseline lacks is reported as new. `boot.ms` (virtual milliseconds, not
# instructions) stays out. --update rewrites the baseline from the log.
# A row printed more than once (tsc.pair is in every smp suite, and CI gates two logs at
# once) counts with its worst (largest) p50, in the check and in --update alike: until
# 2026-12-04 --update kept the first copy and the check the last, so a regressed copy
# could hide behind a good one. A BENCH line of an icount suite that is not 9 fields with
# a numeric p50 (a row cut short: `BENCH,ipc.rtt.64,2000,9000`) is MALFORMED and fails
# the check, and --update refuses the log; until then its empty p50 compared as a string
# and passed.
set -euo pipefail
log=${1:?usage: check-icount.sh <log> <baseline.csv> [--update]}
base=${2:?usage: check-icount.sh <log> <baseline.csv> [--update]}
grep -q '^SUITE,.*,icount,' "$log" || { echo "check-icount: $log is not an icount run" >&2; exit 2; }
# The icount rows of the log, shared by both uses: sets got[name] (the largest p50, as a
# number; shown[name] is its text, mawk prints large numbers as 3e+09) and order[1..n]
# (first-seen order); prints each malformed line as MALFORMED.
# shellcheck disable=SC2016 # an awk program: its $ fields are awk's
rows='
    /^SUITE,/ { mode = $5 }
    /^BENCH,/ && mode == "icount" && $2 != "boot.ms" {
        if (NF != 9 || $2 == "" || $7 !~ /^[0-9]+$/) { printf "MALFORMED %s\n", $0; malformed++; next }
        if (!($2 in got)) order[++n] = $2
        if (!($2 in got) || $7 + 0 > got[$2]) { got[$2] = $7 + 0; shown[$2] = $7 }
    }'
if [ "${3:-}" = --update ]; then
    tmp=$(mktemp "$base.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    if ! awk -F, "$rows"'
        END {
            if (malformed > 0) { printf "check-icount: %d malformed icount BENCH line(s): baseline not written\n", malformed; exit 1 }
            if (n == 0) { print "check-icount: no icount BENCH row: baseline not written"; exit 1 }
            print "name,p50" > out
            for (i = 1; i <= n; i++) print order[i] "," shown[order[i]] > out
        }' out="$tmp" "$log" >&2; then
        exit 1
    fi
    mv -f "$tmp" "$base"
    trap - EXIT
    echo "check-icount: wrote $base"
    exit 0
fi
[ -f "$base" ] || { echo "check-icount: no baseline $base (run with --update)" >&2; exit 2; }
awk -F, '
    FNR == NR {
        if (FNR > 1 && ($1 == "" || $2 !~ /^[0-9]+$/)) { printf "MALFORMED %s (baseline %s line %d)\n", $0, FILENAME, FNR; malformed++ }
        else if (FNR > 1) { want[$1] = $2 + 0; wshown[$1] = $2 }
        next
    }'"$rows"'
    END {
        bad = malformed + 0
        for (n in want) {
            if (!(n in got)) { printf "MISSING   %-32s baseline %s\n", n, wshown[n]; bad++; continue }
            limit = want[n] * 1.10
            st = (got[n] > limit) ? "REGRESSED" : "ok"
            if (got[n] > limit) bad++
            printf "%-9s %-32s %8s (baseline %s)\n", st, n, shown[n], wshown[n]
        }
        for (n in got) if (!(n in want)) printf "new       %-32s %8s\n", n, shown[n]
        exit bad > 0
    }' "$base" "$log"
