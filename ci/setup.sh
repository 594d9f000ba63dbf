#!/usr/bin/env bash
# Idempotent setup for a fresh Debian bookworm machine with only Rust installed.
# Installs: the pinned toolchain's x86_64-unknown-none target + clippy/rustfmt,
# QEMU >= 8 (bookworm-backports; bookworm's own 7.2 has no x2APIC under TCG), `just`,
# cpio, binutils and gcc; Miri on a nightly toolchain when one can be had (scripts/miri.sh); libc6-dev's static glibc (libc.a) for the Linux peer of
# `just compare-linux`, and apt lists that know linux-image-amd64 (its kernel is fetched on use);
# python3 (serve.sh's UDP echo check) and iproute2 (ip for the tap-mq runs, nstat for
# serve.sh bench). QEMU comes from bookworm-backports on Debian only; elsewhere from the
# distribution's own packages, or the script says what is missing and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
# What it reads and where it adds an apt source (tests point these at scratch files).
os_release=${EXO_SETUP_OS_RELEASE:-/etc/os-release}
apt_etc=${EXO_SETUP_APT_ETC:-/etc/apt}
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
    # shellcheck disable=SC1090
    . "$os_release"
    # Debian's backports source only on Debian: on another distribution it would be a broken
    # apt source (until 2026-12-06 it was added whatever the distribution: found by review).
    if [ "${ID:-}" = debian ]; then
        codename=${VERSION_CODENAME:-bookworm}
        if ! grep -rqs "${codename}-backports" "$apt_etc/sources.list" "$apt_etc/sources.list.d/"; then
            say "adding ${codename}-backports to apt sources"
            echo "deb http://deb.debian.org/debian ${codename}-backports main" \
                | $SUDO tee "$apt_etc/sources.list.d/exo-backports.list" >/dev/null
        fi
        say "installing QEMU from ${codename}-backports"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t "${codename}-backports" \
            qemu-system-x86 >/dev/null
    elif command -v apt-get >/dev/null 2>&1; then
        say "not Debian (${ID:-unknown}): installing QEMU from its own packages (no backports source added)"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-system-x86 >/dev/null || true
    else
        echo "setup: QEMU >= 8 (qemu-system-x86_64) is missing and this is not Debian (${ID:-unknown}), nor has it apt-get: install it with this system's package manager" >&2
        exit 1
    fi
    qemu_ok || { echo "setup: QEMU >= 8 still missing after install ($(qemu-system-x86_64 --version 2>/dev/null | head -1 || echo 'no qemu-system-x86_64')): on ${ID:-this system} install QEMU 8 or later by hand" >&2; exit 1; }
    say "QEMU installed: $(qemu-system-x86_64 --version | head -1)"
fi

# cpio packs the initrd (and the initrd reader's tests run the real tool); readelf (binutils)
# and gcc check the ELF loader against real static executables; curl and wrk talk to the
# serve job (scripts/serve.sh), python3 checks its UDP echo; ip (iproute2) makes the taps of
# `just test`'s tap-mq runs and nstat (iproute2) counts serve.sh bench's dropped SYNs.
missing=()
for t in cpio:cpio readelf:binutils gcc:gcc curl:curl wrk:wrk python3:python3 ip:iproute2 nstat:iproute2; do
    command -v "${t%%:*}" >/dev/null 2>&1 || [[ " ${missing[*]} " == *" ${t#*:} "* ]] || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
    say "cpio, readelf, gcc, curl, wrk, python3, ip and nstat present"
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

# Miri (scripts/miri.sh, the `miri` step of ci/test.sh) exists only for nightly toolchains:
# added when a nightly can be had. Best effort: without it that step is skipped, with its
# reason, and setup goes on. The downloads are bounded (3 and 5 minutes): a machine that
# cannot reach the toolchain server loses at most that.
if bash scripts/miri.sh --check >/dev/null 2>&1; then
    say "Miri present: $(cargo +nightly miri --version 2>/dev/null)"
else
    say "adding Miri (nightly toolchain, components miri and rust-src)"
    if rustup run nightly rustc -V >/dev/null 2>&1; then
        timeout 180 rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1 || true
    else
        timeout 300 rustup toolchain install nightly --profile minimal \
            --component miri,rust-src >/dev/null 2>&1 || true
    fi
    if miri_why=$(bash scripts/miri.sh --check); then
        say "Miri installed: $(cargo +nightly miri --version 2>/dev/null)"
    else
        say "no Miri ($miri_why): the miri step of the tests will be skipped"
    fi
fi

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
