#!/usr/bin/env bash
# The main job: boot N CPUs in QEMU, run the kernel self-checks, then the benchmark suites,
# and print the results table against the seed's targets.
#   scripts/run.sh [N=4] [machine=q35]        (EXO_MODE=tcg|icount|kvm, default tcg)
# Writes out/*.log (serial logs), bench_results.csv and out/*.svg (core-to-core heat maps,
# contention curves, the fake nginx's requests per second).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
n=${1:-4} machine=${2:-q35} mode=${EXO_MODE:-tcg}
cpu=$([ "$mode" = kvm ] && echo host || echo max)
mkdir -p out
run() { # job [log name] [extra qemu.sh arguments]
    local job=$1 name=${2:-$1}; shift; [ $# -gt 0 ] && shift
    rm -f "out/$name.log"
    scripts/qemu.sh --machine "$machine" --mode "$mode" --cpu "$cpu" --smp "$n" --job "$job" \
        --log "out/$name.log" "${initrd[@]}" "$@" >/dev/null
}
# Where to look when a run failed: its log, or qemu.sh's own message when it stopped before
# QEMU wrote anything. Each log is removed before its run, so a failure never points at an
# older run's log (until 2026-12-06 it could: found by review).
see() { # log
    if [ -s "$1" ]; then echo "see $1"; else echo "qemu.sh stopped before QEMU wrote anything (its message above)"; fi
}
initrd=()
if scripts/mkinitrd.sh >out/initrd.log 2>&1; then
    initrd=(--initrd "$exo_initrd")
else
    echo "initrd build failed (see out/initrd.log): user mode is skipped"
fi
echo "== boot: $n CPUs, $machine, $mode"
run boot || { echo "boot failed: $(see out/boot.log)"; exit 1; }
grep -E '^(SMP|CPU|BOOTTIME),' out/boot.log
echo
echo "== kernel self-checks"
if run test; then
    tail -n 1 out/test.log
else
    grep -E 'FAIL|PANIC' out/test.log || true; tail -n 1 out/test.log 2>/dev/null || true
    echo "tests failed: $(see out/test.log)"; exit 1
fi
echo
echo "== benchmarks (mode $mode: $( [ "$mode" = kvm ] && echo 'real cycles' || echo 'TSC ticks of an emulated CPU, not cycles'))"
# The bench job gets a hub pair of virtio-net NICs: the net.* rows.
run bench bench --net hub || { echo "bench suite failed: $(see out/bench.log)"; exit 1; }
run contended || { echo "contended suite failed: $(see out/contended.log)"; exit 1; }
cat out/bench.log out/contended.log > out/serial.log
if [ "$mode" != icount ]; then
    # The same kernel suite under -icount shift=0 (seconds): exact guest instructions, the
    # figures that mean something whatever this host's speed; the table shows them beside.
    echo "== benchmarks under icount (guest instructions, deterministic)"
    rm -f out/bench-icount.log
    scripts/qemu.sh --machine microvm --mode icount --cpu max --smp 2 --job bench --net hub \
        --log out/bench-icount.log >/dev/null || { echo "icount bench failed: $(see out/bench-icount.log)"; exit 1; }
    cat out/bench-icount.log >> out/serial.log
fi
if [ ${#initrd[@]} -gt 0 ]; then
    echo "== user mode: /init with the thread suite, /ubench and the fake nginx ($mode), then /ubench under icount"
    # No timer under icount: the thread suite's spinning threads need preemption (and
    # requests per second in instructions mean nothing).
    uarg=$([ "$mode" = icount ] && echo 2 || echo 0x52)
    run init init-user --append "exo.init_arg=$uarg" || { echo "user mode failed: $(see out/init-user.log)"; exit 1; }
    grep -E '^(init: thread suite|nginx: (N=|summary)|MEM,init)' out/init-user.log
    # Instruction counts (deterministic): the figures rows 12 and 13 are judged by in icount.
    rm -f out/init-ubench-icount.log
    scripts/qemu.sh --machine microvm --mode icount --cpu max --smp 2 --job init "${initrd[@]}" \
        --append "exo.init_arg=2" --log out/init-ubench-icount.log >/dev/null ||
        { echo "ubench under icount failed: $(see out/init-ubench-icount.log)"; exit 1; }
    cat out/init-user.log out/init-ubench-icount.log >> out/serial.log
fi
if command -v wrk >/dev/null; then
    echo "== HTTP from the host: the serve job (exo-net on virtio-net, QEMU user networking) under wrk"
    if scripts/serve.sh bench "$(printf "%s\n" 1 2 "$n" | sort -nu | tr "\n" " ")" 2>&1 | grep -E "^http at"; then
        cat out/serve-bench.log >> out/serial.log
    else
        echo "serve bench failed: see out/serve-*.log"
    fi
fi
echo "== native hot paths (real cycles on this host)"
if EXO_GIT_REV=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) \
    cargo run -q --release -p exo-native-bench >out/native.log 2>out/native.err; then
    cat out/native.log >> out/serial.log
else
    echo "native bench failed: see out/native.err"
fi
scripts/extract-benches.sh out/serial.log bench_results.csv
echo
# The Linux column: from the last `just compare-linux icount` (out/compare), if any.
linux=()
if [ -f out/compare/linux-off.csv ] && grep -q '^linux,icount,' out/compare/linux-off.csv; then
    linux=(--linux out/compare/linux-off.csv)
fi
cargo run -q -p smp-bench --features report --bin exo-report -- bench_results.csv --svg-dir out "${linux[@]}"
echo
echo "CSV: bench_results.csv   plots: $(ls out/*.svg 2>/dev/null | tr '\n' ' ')"
