#!/usr/bin/env bash
# Run one benchmark suite and refresh bench_results.csv, the report and the SVGs.
#   scripts/bench.sh <bench|contended|native> [mode=tcg|icount|kvm] [N=4] [machine=microvm]
# Each run keeps its serial log as out/<suite>-<mode>.log; bench_results.csv is rebuilt from
# all of them, so kvm/native rows and emulated rows can sit side by side (the report prefers
# real cycles).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
job=${1:?usage: scripts/bench.sh <bench|contended|native> [mode] [N] [machine]}
mode=${2:-tcg} n=${3:-4} machine=${4:-microvm}
mkdir -p out
if [ "$job" = native ]; then
    log=out/native-native.log
    EXO_GIT_REV=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) \
        cargo run -q --release -p exo-native-bench | tee "$log"
else
    cpu=$([ "$mode" = kvm ] && echo host || echo max)
    [ -f target/x86_64-unknown-none/release/exo ] || cargo build -q -p exo --target x86_64-unknown-none --release
    log="out/$job-$mode.log"
    scripts/qemu.sh --job "$job" --mode "$mode" --machine "$machine" --cpu "$cpu" --smp "$n" --log "$log" \
        | grep -E '^(SUITE|BENCH|FAIR|END),'
fi
# Only this script's suite logs (not run.sh's or the serve job's, which share out/), oldest
# first, so that where two hold the same row the newest wins (until 2026-12-04 every
# out/*-*.log was taken in name order: an old log could win over a fresh one). A log
# from another revision is named.
head_rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
logs=$(ls -tr out/{bench,contended,native}-{tcg,icount,kvm,native}.log 2>/dev/null || true)
for l in $logs; do
    rev=$(grep -m1 '^SUITE,' "$l" | cut -d, -f7)
    [ -z "$rev" ] || [ "$rev" = "$head_rev" ] || [ "$head_rev" = unknown ] ||
        echo "bench: $l is from revision $rev, not $head_rev (its rows are kept; run its suite again to refresh them)" >&2
done
# shellcheck disable=SC2086
cat $logs /dev/null | grep -E '^(SUITE|BENCH|FAIR|END),' > out/all-results.log || true
scripts/extract-benches.sh out/all-results.log bench_results.csv
echo
cargo run -q -p smp-bench --features report --bin exo-report -- bench_results.csv --svg-dir out
