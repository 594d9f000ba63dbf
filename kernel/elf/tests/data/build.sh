#!/bin/sh
# Rebuilds the ELF fixtures of exo-elf's tests, and next to each one `<name>.readelf`, the
# output of `readelf -hlrW` that tests/real_binaries.rs compares the load plans with.
# Needs gcc and binutils (tested with Debian gcc 12.2, binutils 2.40) and rustc with the
# x86_64-unknown-none target (tested with 1.95). Run from anywhere:
#   sh kernel/elf/tests/data/build.sh
#
#   tiny-exec       gcc -static -nostdlib            ET_EXEC, TLS, .bss over several pages
#   tiny-pie        gcc -static-pie -nostdlib        ET_DYN, 3 R_X86_64_RELATIVE relocations
#   tiny-execstack  as tiny-exec, -z execstack       rejected: executable stack
#   tiny-interp     gcc -pie -nostdlib (dynamic)     rejected: PT_INTERP
#   tiny-rwx        as tiny-exec, ld -N (omagic)     rejected: one RWX segment
#   rs-pie          rustc x86_64-unknown-none        ET_DYN (rust-lld), PT_PHDR, 2 RW segments
#   rs-exec         same, -C relocation-model=static ET_EXEC (rust-lld)
set -eu
cd "$(dirname "$0")"
CFLAGS="-O2 -nostdlib -fno-asynchronous-unwind-tables -fcf-protection=none -s -Wl,--build-id=none"
gcc $CFLAGS -static -o tiny-exec tiny.c
gcc $CFLAGS -static-pie -fPIE -o tiny-pie tiny.c
gcc $CFLAGS -static -Wl,-z,execstack -o tiny-execstack tiny.c
gcc $CFLAGS -pie -fPIE -o tiny-interp tiny.c
gcc $CFLAGS -static -Wl,-N -o tiny-rwx tiny.c
RUSTFLAGS="--edition 2024 --target x86_64-unknown-none -C panic=abort -C opt-level=2 -C strip=symbols"
rustc $RUSTFLAGS -o rs-pie rs.rs
rustc $RUSTFLAGS -C relocation-model=static -o rs-exec rs.rs
for f in tiny-exec tiny-pie tiny-execstack tiny-interp tiny-rwx rs-pie rs-exec; do
    chmod 644 "$f"
    LC_ALL=C readelf -hlrW "$f" > "$f.readelf"
done
