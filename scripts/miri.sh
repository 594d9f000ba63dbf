#!/usr/bin/env bash
# Miri (Rust's interpreter that checks every memory access against the language's rules:
# Stacked Borrows aliasing, use after free, uninitialised reads, data races on non-atomic
# memory) over the host tests of exo-sync, the one host-testable crate with `unsafe`: the
# MCS, ticket and TAS locks, the parking mutex, the lock guards and the SPSC byte ring. The
# other no_std crates forbid or deny `unsafe` (Miri would add nothing), and `arch`, `percpu`
# and `user/rt` are inline assembly, which Miri cannot run. The fusion rings (`fusion::`)
# are safe code over atomics: left out (about 60 s for nothing Miri checks).
#
# Miri exists only for nightly toolchains: this is the one place the project uses one (as a
# checker; the code itself builds on the pinned stable, rust-toolchain.toml). ci/setup.sh
# adds it when it can (`rustup component add miri rust-src --toolchain nightly`).
#
#   scripts/miri.sh           run (about 2 minutes here, after a one-time sysroot build)
#   scripts/miri.sh --check   exit 0 if Miri can run here; else print why, exit 3
#
# Under Miri the tests' stress and ping-pong counts are cut (`cfg!(miri)` in their sources)
# and proptest makes PROPTEST_CASES cases (default 3 here): every access is interpreted,
# about 1,000 times slower. Leaks are not checked (-Zmiri-ignore-leaks): the ring's tests
# leak their state on purpose (`Box::leak`, as the kernel's `'static` rings are). Isolation
# is off (-Zmiri-disable-isolation): the deadline tests read the clock.
#
# Found with it (2026-12-07): the MCS lock's successor kept a `&McsNode` of its predecessor
# as an argument of its spin, and the predecessor frees its node once it has handed over,
# which may be before that call returns: undefined behaviour under Stacked Borrows
# ("deallocating while item is strongly protected", `tests::mcs_lock_is_fifo`); fixed in
# `kernel/sync/src/mcs.rs` (`wait_as_successor` takes a raw pointer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

toolchain=${EXO_MIRI_TOOLCHAIN:-nightly}

why_not() {
    if ! command -v rustup >/dev/null 2>&1; then
        echo "no rustup"
    elif ! rustup run "$toolchain" rustc -V >/dev/null 2>&1; then
        echo "no $toolchain toolchain (rustup toolchain install $toolchain --component miri,rust-src)"
    elif ! cargo "+$toolchain" miri --version >/dev/null 2>&1; then
        echo "the $toolchain toolchain has no Miri (rustup component add miri rust-src --toolchain $toolchain)"
    fi
}

if [ "${1:-}" = --check ]; then
    why=$(why_not)
    [ -z "$why" ] && exit 0
    echo "$why"
    exit 3
fi
why=$(why_not)
[ -z "$why" ] || { echo "miri: cannot run: $why" >&2; exit 3; }

echo "miri: $(cargo "+$toolchain" miri --version) ($(rustup run "$toolchain" rustc -V))"
cargo "+$toolchain" miri setup >/dev/null
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation -Zmiri-ignore-leaks}" \
    PROPTEST_CASES="${PROPTEST_CASES:-3}" \
    cargo "+$toolchain" miri test -p exo-sync --lib -- --skip fusion:: "$@"
