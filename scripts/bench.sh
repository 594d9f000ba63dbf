#!/usr/bin/env bash
# Run one benchmark suite and refresh bench_results.csv, the report and the SVGs.
#   scripts/bench.sh <bench|contended|native> [mode=tcg|icount|kvm] [N=4] [machine=microvm]
# Each run keeps its serial log as out/<suite>-<mode>.log; bench_results.csv is rebuilt from
# all of them, so kvm/native rows and emulated rows can sit side by side (the report prefers
# real cycles). A run is written to a temporary name first and takes the log's name only if
# it succeeded (exit 0, no ERROR,bench line, a SUITE line): a failed run's log is kept as
# out/<suite>-<mode>.failed.log, outside the report, and the script fails (until 2026-12-04
# it took the log's name and was folded into every later report). A log without a SUITE
# line (a run that died at boot) is named and left out of the report.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
job=${1:?usage: scripts/bench.sh <bench|contended|native> [mode] [N] [machine]}
mode=${2:-tcg} n=${3:-4} machine=${4:-microvm}
mkdir -p out
if [ "$job" = native ]; then mode=native; fi
log="out/$job-$mode.log"
part="out/$job-$mode.part.log"
rc=0
if [ "$job" = native ]; then
    EXO_GIT_REV=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) \
        cargo run -q --release -p exo-native-bench | tee "$part" || rc=$?
else
    cpu=$([ "$mode" = kvm ] && echo host || echo max)
    [ -f "$exo_kernel" ] || cargo build -q -p exo --target x86_64-unknown-none --release
    scripts/qemu.sh --job "$job" --mode "$mode" --machine "$machine" --cpu "$cpu" --smp "$n" --log "$part" \
        | { grep -E '^(SUITE|BENCH|FAIR|END|ERROR),' || true; } || rc=$?
fi
why=""
if [ "$rc" != 0 ]; then why="exit $rc"
elif grep -q '^ERROR,bench' "$part"; then why="an ERROR,bench line"
elif ! grep -q '^SUITE,' "$part"; then why="no SUITE line"
fi
if [ -n "$why" ]; then
    mv -f "$part" "out/$job-$mode.failed.log"
    echo "bench: the $job run failed ($why): its log is out/$job-$mode.failed.log, left out of the report ($log, if any, is from an earlier run)" >&2
    exit 1
fi
mv -f "$part" "$log"
# Only this script's suite logs (not run.sh's or the serve job's, which share out/), oldest
# first, so that where two hold the same row the newest wins (until 2026-12-04 every
# out/*-*.log was taken in name order: an old log could win over a fresh one). A log
# from another revision is named.
head_rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
all=$(ls -tr out/{bench,contended,native}-{tcg,icount,kvm,native}.log 2>/dev/null || true)
logs=""
for l in $all; do
    # No SUITE line: a run that died at boot (until 2026-12-04 grep's failure here ended
    # the script, silently, under pipefail).
    if ! grep -q '^SUITE,' "$l"; then
        echo "bench: $l has no SUITE line (a run that failed early?): ignored; run its suite again" >&2
        continue
    fi
    logs="$logs $l"
    rev=$(awk -F, '/^SUITE,/ { print $7; exit }' "$l")
    [ -z "$rev" ] || [ "$rev" = "$head_rev" ] || [ "$head_rev" = unknown ] ||
        echo "bench: $l is from revision $rev, not $head_rev (its rows are kept; run its suite again to refresh them)" >&2
done
# ERROR lines go along: extract-benches skips the rows of a suite that has one (a log an
# earlier version of this script kept after a failed run).
# shellcheck disable=SC2086
cat $logs /dev/null | grep -E '^(SUITE|BENCH|FAIR|END|ERROR),' > out/all-results.log || true
scripts/extract-benches.sh out/all-results.log bench_results.csv
echo
cargo run -q -p smp-bench --features report --bin exo-report -- bench_results.csv --svg-dir out
