#!/usr/bin/env bash
# Builds the user programs and packs the initrd: a cpio archive (newc) of static ELF64
# executables, what QEMU passes with -initrd and exo.job=init starts (docs/syscalls.md).
#
#   scripts/mkinitrd.sh [--out FILE] [--no-c]
#
# FILE defaults to target/initrd.cpio ($CARGO_TARGET_DIR/initrd.cpio when that is set).
# Entries: init, hello, empty, faults, ubench, threads, ipcdemo, fuzz, nginx, names, hog (the Rust programs
# of user/, built with `cargo build --release --target x86_64-unknown-none`), hello-c
# (user/c/hello.c, built
# with gcc as docs/syscalls.md says; skipped with a note when gcc is missing or --no-c) and
# README (what the archive holds; text, which `spawn` refuses with ENOEXEC: a kernel test's).
# The archive is reproducible (cpio --reproducible, fixed modes and times).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0" >&2; exit 2; }

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
target_dir=$exo_target
out=$exo_initrd
want_c=1
while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --no-c) want_c=0; shift ;;
        *) usage ;;
    esac
done
command -v cpio >/dev/null || { echo "mkinitrd: cpio is not installed (just setup)" >&2; exit 1; }

programs=(init hello empty faults ubench threads ipcdemo fuzz nginx names hog)
packages=()
for p in "${programs[@]}"; do packages+=(-p "exo-$p"); done
"${CARGO:-cargo}" build --release --target x86_64-unknown-none "${packages[@]}"
bin=$target_dir/x86_64-unknown-none/release

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
names=()
for p in "${programs[@]}"; do
    install -m 0755 "$bin/exo-$p" "$stage/$p"
    names+=("$p")
done
if [ "$want_c" = 1 ] && command -v gcc >/dev/null; then
    gcc -static -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector \
        -Wl,-Ttext-segment=0x400000 -O2 -Wall -Wextra -Werror \
        -o "$stage/hello-c" user/c/hello.c
    names+=(hello-c)
elif [ "$want_c" = 1 ]; then
    echo "mkinitrd: gcc not found: no hello-c in the initrd" >&2
fi

printf '%s\n' "Exo-OS initrd: the programs exo.job=init can start (exo.init=/<name>):" \
    "${names[@]}" >"$stage/README"
names+=(README)
touch -d @0 "$stage"/*
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX")
# A failed cpio or truncate leaves no partial archive behind (set -e exits through the trap).
trap 'rm -rf "$stage"; rm -f "$tmp"' EXIT
(cd "$stage" && printf '%s\n' "${names[@]}" | cpio -o -H newc --quiet --reproducible -R 0:0) >"$tmp"
# Zeros after the trailer up to a page multiple (the reader ignores them): see qemu.sh.
truncate -s %4096 "$tmp"
mv -f "$tmp" "$out"
echo "mkinitrd: $out ($(stat -c %s "$out") bytes): ${names[*]}"
