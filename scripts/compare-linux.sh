#!/usr/bin/env bash
# The same operations on Linux and on Exo-OS, in the same QEMU, side by side.
#   scripts/compare-linux.sh [mode=icount] [N=2] [machine=microvm]
#   scripts/compare-linux.sh --linux-only [mode] [N] [machine]     (CI: the Linux side alone)
# Linux: Debian's kernel (linux-image-amd64 resolved to the real linux-image-6.x package,
# fetched with `apt-get download`, only vmlinuz kept, cached in target/linux/; or
# EXO_LINUX_KERNEL=<bzImage>), booted with an initramfs whose /init is the static peer
# smp-bench/linux (exo-linux-peer), with exactly the QEMU flags scripts/qemu.sh gives Exo-OS
# for that mode and machine, once with mitigations=off and once with the default
# mitigations. Exo-OS: the kernel bench job (suite smp) and /ubench (suite user, through
# exo.job=init exo.init_arg=2), and outside icount the contended job (c2c.rtt.0.1), same
# mode, machine and N.
# EXO_COMPARE_MITIGATIONS="off" (or "default") boots Linux once only; EXO_COMPARE_OUT moves
# the output directory.
# Writes out/compare/{linux-off,linux-default,exo}.{log,csv}, out/compare/table.{txt,md} and
# out/compare/compare.svg; prints the table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
linux_only=0
if [ "${1:-}" = --linux-only ]; then linux_only=1; shift; fi
mode=${1:-icount} n=${2:-2} machine=${3:-microvm}
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
target_dir=$exo_target
cache=$exo_target/linux
out=${EXO_COMPARE_OUT:-$root/out/compare}
mkdir -p "$cache" "$out"
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
cpu=$([ "$mode" = kvm ] && echo host || echo max)
tmo=${EXO_COMPARE_TIMEOUT:-900}

# 1. The Linux kernel: vmlinuz only, cached.
kernel=${EXO_LINUX_KERNEL:-}
if [ -z "$kernel" ]; then
    kernel=$(ls "$cache"/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$kernel" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || { echo "compare-linux: apt-cache cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
    echo "compare-linux: fetching $pkg (vmlinuz only is kept)" >&2
    tmp=$(mktemp -d "$cache/deb.XXXXXX")
    (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || { rm -rf "$tmp"; echo "compare-linux: apt-get download $pkg failed" >&2; exit 1; }
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
    mv "$tmp"/boot/vmlinuz-* "$cache/"
    rm -rf "$tmp"
    kernel=$(ls "$cache"/vmlinuz-* | sort -V | tail -1)
fi
[ -f "$kernel" ] || { echo "compare-linux: no kernel at $kernel" >&2; exit 1; }

# 2. The peer, static (glibc), and the initramfs: /init alone (it writes /empty itself).
EXO_GIT_REV=$rev RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build -q --release -p exo-linux-peer --target x86_64-unknown-linux-gnu
peer=$target_dir/x86_64-unknown-linux-gnu/release/exo-linux-peer
if readelf -l "$peer" | grep -q INTERP; then
    echo "compare-linux: $peer is not static (libc6-dev's libc.a missing? run ci/setup.sh)" >&2; exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$peer" "$stage/init"
touch -d @0 "$stage/init"
initramfs=$cache/initramfs.cpio
# Written beside and renamed: two runs at once never read a half-written archive.
initramfs_tmp=$(mktemp "$initramfs.XXXXXX")
(cd "$stage" && echo init | cpio -o -H newc --quiet --reproducible -R 0:0) >"$initramfs_tmp"
mv -f "$initramfs_tmp" "$initramfs"

# 3. Linux, both mitigation settings.
# Under TCG the guest TSC is the host's, and Linux's early calibration against the PIT fails
# now and then on a loaded host ("tsc: Unable to calibrate against PIT"; microvm has no HPET
# or PM timer to fall back on) and the boot hangs there (2 of 5 boots here): under tcg only,
# give it the host's clock (a Linux command-line option; the QEMU flags stay Exo-OS's).
tsc_arg=""
if [ "$mode" = tcg ]; then
    khz=$(awk -F: '/^cpu MHz/ { print int($2 * 1000); exit }' /proc/cpuinfo)
    [ -n "$khz" ] && [ "$khz" -gt 0 ] && tsc_arg="tsc_early_khz=$khz"
fi
linux_run() { # name extra-append
    local name=$1 extra="$2 $tsc_arg" rc=0
    scripts/qemu.sh --kernel "$kernel" --initrd "$initramfs" --machine "$machine" --mode "$mode" \
        --cpu "$cpu" --smp "$n" --job linux --timeout "$tmo" \
        --append "console=ttyS0 quiet panic=-1 $extra" --log "$out/$name.log" >/dev/null || rc=$?
    if [ "$rc" != 0 ] || ! grep -q '^END,linux,' "$out/$name.log"; then
        echo "compare-linux: the Linux run '$name' failed (qemu.sh exit $rc): see $out/$name.log" >&2
        return 1
    fi
    scripts/extract-benches.sh "$out/$name.log" "$out/$name.csv" 2>/dev/null
}
rm -f "$out"/linux-*.log "$out"/linux-*.csv
for m in ${EXO_COMPARE_MITIGATIONS:-off default}; do
    t0=$SECONDS
    case $m in
        off) linux_run linux-off "mitigations=off" ;;
        default) linux_run linux-default "" ;;
        *) echo "compare-linux: EXO_COMPARE_MITIGATIONS: 'off' and/or 'default', not '$m'" >&2; exit 2 ;;
    esac
    echo "compare-linux: Linux (mitigations $m), $mode, -smp $n: $((SECONDS - t0)) s" >&2
done
[ "$linux_only" = 1 ] && exit 0

# 4. Exo-OS: the kernel bench job and /ubench, same mode, machine and N.
cargo build -q -p exo --target x86_64-unknown-none --release
exo=$target_dir/x86_64-unknown-none/release/exo
scripts/mkinitrd.sh >"$out/mkinitrd.log" 2>&1 || { echo "compare-linux: initrd build failed: see $out/mkinitrd.log" >&2; exit 1; }
t0=$SECONDS
scripts/qemu.sh --kernel "$exo" --machine "$machine" --mode "$mode" --cpu "$cpu" --smp "$n" \
    --job bench --timeout "$tmo" --log "$out/exo-bench.log" >/dev/null ||
    { echo "compare-linux: Exo-OS bench job failed: see $out/exo-bench.log" >&2; exit 1; }
scripts/qemu.sh --kernel "$exo" --initrd "$target_dir/initrd.cpio" --machine "$machine" --mode "$mode" \
    --cpu "$cpu" --smp "$n" --job init --append "exo.init_arg=2" --timeout "$tmo" --log "$out/exo-user.log" >/dev/null ||
    { echo "compare-linux: Exo-OS /ubench failed: see $out/exo-user.log" >&2; exit 1; }
exo_logs=("$out/exo-bench.log" "$out/exo-user.log")
# c2c.rtt.0.1 comes from the contended job; under icount one vCPU runs at a time and neither
# side measures it (a spinning hand-off would time QEMU's round-robin slice).
if [ "$mode" != icount ] && [ "$n" -ge 2 ]; then
    scripts/qemu.sh --kernel "$exo" --machine "$machine" --mode "$mode" --cpu "$cpu" --smp "$n" \
        --job contended --timeout "$tmo" --log "$out/exo-contended.log" >/dev/null ||
        { echo "compare-linux: Exo-OS contended job failed: see $out/exo-contended.log" >&2; exit 1; }
    exo_logs+=("$out/exo-contended.log")
fi
echo "compare-linux: Exo-OS (bench job + /ubench), $mode, -smp $n: $((SECONDS - t0)) s" >&2
cat "${exo_logs[@]}" >"$out/exo.log"
scripts/extract-benches.sh "$out/exo.log" "$out/exo.csv" 2>/dev/null

# 5. One table and the chart.
[ -f "$out/linux-off.csv" ] || { echo "compare-linux: the table needs the mitigations=off run" >&2; exit 2; }
linux_csvs=("$out/linux-off.csv")
[ -f "$out/linux-default.csv" ] && linux_csvs+=("$out/linux-default.csv")
report() {
    cargo run -q -p smp-bench --features report --bin exo-compare -- "$out/exo.csv" "${linux_csvs[@]}" "$@"
}
report --markdown >"$out/table.md"
report --svg "$out/compare.svg" | tee "$out/table.txt"
echo
echo "logs, CSVs and tables in $out; chart: $out/compare.svg"
