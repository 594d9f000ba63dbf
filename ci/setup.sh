#!/usr/bin/env bash
# Idempotent setup for a fresh Debian bookworm machine with only Rust installed.
# Installs: the pinned toolchain's x86_64-unknown-none target + clippy/rustfmt,
# QEMU >= 8 (bookworm-backports; bookworm's own 7.2 has no x2APIC under TCG), `just`,
# cpio, binutils and gcc; libc6-dev's static glibc (libc.a) for the Linux peer of
# `just compare-linux`, and apt lists that know linux-image-amd64 (its kernel is fetched on use).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

qemu_ok() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    local v
    v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [ "${v:-0}" -ge 8 ]
}

if qemu_ok; then
    say "QEMU present: $(qemu-system-x86_64 --version | head -1)"
else
    . /etc/os-release
    codename=${VERSION_CODENAME:-bookworm}
    if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        say "adding ${codename}-backports to apt sources"
        echo "deb http://deb.debian.org/debian ${codename}-backports main" \
            | $SUDO tee /etc/apt/sources.list.d/exo-backports.list >/dev/null
    fi
    say "installing QEMU from ${codename}-backports"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t "${codename}-backports" \
        qemu-system-x86 >/dev/null
    qemu_ok || { echo "setup: QEMU >= 8 still missing after install" >&2; exit 1; }
    say "QEMU installed: $(qemu-system-x86_64 --version | head -1)"
fi

# cpio packs the initrd (and the initrd reader's tests run the real tool); readelf (binutils)
# and gcc check the ELF loader against real static executables; curl and wrk talk to the
# serve job (scripts/serve.sh).
missing=()
for t in cpio:cpio readelf:binutils gcc:gcc curl:curl wrk:wrk; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
    say "cpio, readelf, gcc, curl and wrk present"
fi

# The Linux peer (smp-bench/linux) links glibc statically (+crt-static): libc.a comes with libc6-dev.
if [ -f /usr/lib/x86_64-linux-gnu/libc.a ]; then
    say "static glibc (libc6-dev) present"
else
    say "installing libc6-dev (static glibc for the Linux peer)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libc6-dev >/dev/null
fi
# scripts/compare-linux.sh resolves linux-image-amd64 with apt-cache and fetches it with apt-get download.
if apt-cache depends linux-image-amd64 2>/dev/null | grep -q 'Depends: linux-image-[0-9]'; then
    say "apt knows linux-image-amd64"
else
    say "apt-get update (linux-image-amd64 unknown to apt)"
    $SUDO apt-get update -qq
fi

# The toolchain file pins the version; rustup installs it and the components/targets it names.
say "Rust toolchain: $(rustup show active-toolchain 2>/dev/null | head -1)"
tc=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$tc" --profile minimal --component clippy,rustfmt \
    --target x86_64-unknown-none >/dev/null 2>&1 || true
rustup target add --toolchain "$tc" x86_64-unknown-none >/dev/null
rustup component add --toolchain "$tc" clippy rustfmt >/dev/null

if command -v just >/dev/null 2>&1; then
    say "just present: $(just --version)"
else
    say "installing just"
    if ! python3 -m pip install -q rust-just 2>/dev/null; then
        cargo install --locked just
    fi
    command -v just >/dev/null 2>&1 || { echo "setup: just not on PATH" >&2; exit 1; }
    say "just installed: $(just --version)"
fi
say "done"
