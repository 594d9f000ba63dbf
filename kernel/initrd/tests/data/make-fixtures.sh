#!/bin/sh
# Regenerates the cpio fixtures of exo-initrd's tests with GNU cpio (tested with 2.13).
#   sample.cpio      cpio -o -H newc   (magic 070701)
#   sample-crc.cpio  cpio -o -H crc    (magic 070702, data checksums)
# The tree is described in tests/fixtures.rs (`SAMPLE`); keep both in step.
# Run from anywhere: sh kernel/initrd/tests/data/make-fixtures.sh
set -eu
out=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
mkdir -p "$root/bin" "$root/etc" "$root/odd"
printf '\177ELF-not-really: exo init\n' > "$root/init"           # 26 bytes
printf 'hello' > "$root/bin/hello"                                # 5 bytes
ln -s hello "$root/bin/sh"
ln "$root/init" "$root/bin/init-link"                            # hard link
: > "$root/etc/empty"
printf 'motd' > "$root/etc/motd"                                  # 4 bytes: no padding
printf 'x' > "$root/odd/a"
printf 'xy' > "$root/odd/ab"
printf 'xyz' > "$root/odd/abc"
printf 'données\n' > "$root/odd/données.txt"
mkfifo "$root/odd/fifo"
find "$root" -exec touch -h -d @1700000000 {} +
chmod 755 "$root/init" "$root/bin/hello"
chmod 644 "$root/etc/motd" "$root/etc/empty" "$root/odd/a" "$root/odd/ab" "$root/odd/abc" "$root/odd/données.txt"
chmod 600 "$root/odd/fifo"
chmod 755 "$root/bin" "$root/etc" "$root/odd" "$root"
cd "$root"
find . | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet > "$out/sample.cpio"
find . | LC_ALL=C sort | cpio -o -H crc --reproducible -R 0:0 --quiet > "$out/sample-crc.cpio"
