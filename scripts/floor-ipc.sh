#!/usr/bin/env bash
# How far a data redesign of the IPC fastpath could take `ipc.rtt.64`: replays the measured
# throw-away builds of README "How far this design can go" on this checkout.
#
#   scripts/floor-ipc.sh [--keep | --check]
#
# Makes a detached worktree of HEAD in a temporary folder, then for the base and after each
# step of docs/experiments/ipc-floor/ (applied cumulatively) builds the kernel there and runs
# /ubench under `-icount shift=0` (microvm -smp 2, the initrd of this checkout, which
# `just initrd` builds), printing the exact round trip of `ipc.rtt.64` and `ipc.rtt.1k.zc`:
#
#   step1.diff  no fastpath counters (per-process system calls, fast count, switches,
#               parked exits)
#   step2.diff  no CPU lock, SeqCst fence or wait re-check in the parked exit
#   step3.diff  the waiter's state word merged into the thread's claim: no sequence begun,
#               no check of the caller's word after the claim, no DONE store into a claimed
#               frame, no tid store per operation
#
# The steps are correct only for the benchmark's steady state (a parked server and client
# on one CPU): the later /ubench rows may hang, which the run's timeout ends; they are
# measurements of what the redesign could save, never a kernel to run. A step that no
# longer applies (the fastpath changed) is reported and ends the script. --keep leaves the
# worktree for inspection. Takes a few minutes (one kernel build per step). --check only
# applies the steps, cumulatively, and builds nothing (CI: the patches still fit the fastpath).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
keep="" check=""
[ "${1:-}" = --keep ] && keep=1
[ "${1:-}" = --check ] && check=1
initrd=$exo_initrd
[ -n "$check" ] || [ -f "$initrd" ] || { echo "floor-ipc.sh: no $initrd (run 'just initrd')" >&2; exit 2; }
wt=$(mktemp -d /tmp/exo-floor-ipc.XXXXXX)
cleanup() {
    if [ -z "$keep" ]; then
        git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
    else
        echo "floor-ipc.sh: worktree kept at $wt" >&2
    fi
}
trap cleanup EXIT
git -C "$root" worktree add --detach -q "$wt" HEAD
# One target folder for every step: each build is incremental on the one before.
export CARGO_TARGET_DIR=$exo_target/floor-ipc

measure() {
    local name=$1 log=$wt/ubench-$1.log
    (cd "$wt" && cargo build -q -p exo --target x86_64-unknown-none --release) \
        || { echo "floor-ipc.sh: the build of step '$name' failed" >&2; exit 1; }
    EXO_QEMU_TIMEOUT=60 "$wt/scripts/qemu.sh" --kernel "$CARGO_TARGET_DIR/x86_64-unknown-none/release/exo" \
        --machine microvm --cpu max --mode icount --smp 2 --job init --initrd "$initrd" \
        --append exo.init_arg=2 --log "$log" >/dev/null 2>&1 || true
    local rtt zc
    rtt=$(awk -F, '$1 == "BENCH" && $2 == "ipc.rtt.64" { print $7 }' "$log")
    zc=$(awk -F, '$1 == "BENCH" && $2 == "ipc.rtt.1k.zc" { print $7 }' "$log")
    [ -n "$rtt" ] || { echo "floor-ipc.sh: step '$name' printed no ipc.rtt.64 (log $log)" >&2; keep=1; exit 1; }
    printf '%-6s %11s %14s\n' "$name" "$rtt" "${zc:--}"
}

[ -n "$check" ] || { printf '%-6s %11s %14s\n' step ipc.rtt.64 ipc.rtt.1k.zc; measure base; }
n=0
for p in "$root"/docs/experiments/ipc-floor/step*.diff; do
    step=$(basename "$p" .diff)
    git -C "$wt" apply "$p" || { echo "floor-ipc.sh: $step no longer applies to this fastpath" >&2; exit 1; }
    n=$((n + 1))
    [ -n "$check" ] || measure "$step"
done
[ -z "$check" ] || { echo "floor-ipc.sh: the $n steps apply to this fastpath"; exit 0; }
echo "(icount: exact instructions per round trip, microvm -smp 2; README: How far this design can go)"
