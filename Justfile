# Exo-OS: thin recipes over scripts that CI runs the same way.
# -e and pipefail: a recipe line fails when any of its commands fails, the first of a pipe
# included (until 2026-12-04 `just bench-net` passed when QEMU failed, its grep had output).
set shell := ["bash", "-euo", "pipefail", "-c"]

# Where cargo builds: $CARGO_TARGET_DIR when set, else target/ (scripts/lib.sh says the same).
target := env("CARGO_TARGET_DIR", "target")

# List the recipes.
default:
    @just --list

# Install what is missing (QEMU >= 8, the kernel target, just). Idempotent; run as root.
setup:
    bash ci/setup.sh

# Build the bootable ELF at target/x86_64-unknown-none/release/exo ($CARGO_TARGET_DIR/... when set).
build:
    cargo build -p exo --target x86_64-unknown-none --release

# The main job: boot N CPUs, run the kernel self-checks, then the benchmark suites, print results.
run n="4" machine="q35": build
    scripts/run.sh {{n}} {{machine}}

# Boot N CPUs in QEMU (default job: CPU table and boot timings). mode: tcg | icount | kvm;
# cpu: a QEMU model, default max (host under kvm).
qemu-smp n="4" machine="q35" mode="tcg" cpu="": build
    scripts/qemu.sh --machine {{machine}} --mode {{mode}} {{ if cpu != "" { "--cpu " + cpu } else { "" } }} --smp {{n}} --job boot

# Single-CPU suite (exo.job=bench). mode: tcg | icount | kvm.
bench mode="tcg" n="4" machine="microvm": build
    scripts/bench.sh bench {{mode}} {{n}} {{machine}}

# Single-CPU suite under -icount shift=0: deterministic instruction counts.
bench-icount n="2" machine="microvm": build
    scripts/bench.sh bench icount {{n}} {{machine}}

# How far a data redesign of the IPC fastpath could take ipc.rtt.64 (icount): replays the
# throw-away steps of docs/experiments/ipc-floor/ on a temporary worktree.
floor-ipc: initrd
    bash scripts/floor-ipc.sh

# Where the instructions of one ipc.rtt.64 round trip go (icount, exact): by function, by
# source line, and the executed instructions of FUNC (e.g. exo::user::ipc::dispatch).
iprof-ipc func="": build
    bash scripts/mkinitrd.sh >/dev/null
    mkdir -p out
    IPROF_TITLE="ipc.rtt.64, microvm" scripts/iprof.sh --job init --per 1000 --user-elf {{target}}/x86_64-unknown-none/release/exo-ubench --base "exo.init=/ubench exo.init_arg=0x5000000000000000" --probe "exo.init=/ubench exo.init_arg=0x50000000000003e8" --svg out/iprof-ipc.svg --mark "300:target" --mark "441:seL4 fastpath, 0 words" {{ if func != "" { "--annotate '" + func + "'" } else { "" } }}

# The same for proc.spawn: /ubench's spawn profile role, 0 or 20 spawns + waits of /empty.
iprof-spawn func="": build
    bash scripts/mkinitrd.sh >/dev/null
    mkdir -p out
    IPROF_TITLE="proc.spawn, microvm" scripts/iprof.sh --job init --per 20 --user-elf {{target}}/x86_64-unknown-none/release/exo-ubench --base "exo.init=/ubench exo.init_arg=0x5300000000000000" --probe "exo.init=/ubench exo.init_arg=0x5300000000000014" --svg out/iprof-spawn.svg --mark "325242:Linux posix_spawn" {{ if func != "" { "--annotate '" + func + "'" } else { "" } }}

# Which kernel lines the kernel's own runs execute (TCG, QEMU's translation log): out/kcov/.
kcov runs="test net init bench" n="4": build initrd
    scripts/kcov.sh --runs "{{runs}}" --smp {{n}}

# Core-to-core matrix and lock contention (exo.job=contended), with SVG plots in out/.
bench-contended n="4" mode="tcg" machine="microvm": build
    scripts/bench.sh contended {{mode}} {{n}} {{machine}}

# The no_std hot paths on the host: real cycles, threads pinned.
bench-native:
    scripts/bench.sh native

# Exo-OS beside Linux (Debian's kernel, the peer smp-bench/linux as /init), same QEMU flags,
# mitigations off and default: one table and out/compare/compare.svg. mode: icount | tcg | kvm.
compare-linux mode="icount" n="2" machine="microvm":
    scripts/compare-linux.sh {{mode}} {{n}} {{machine}}

# The network rows: one queue pair on a QEMU hub pair (packets per second under tcg/kvm, the
# driver's instructions per packet under icount), then as root the transmit rate per queue
# count on a multi-queue tap (net.mq.tx.pps.<q>, tcg/kvm). mode: tcg | icount | kvm.
bench-net mode="icount" n="4" machine="q35": build
    mkdir -p out
    scripts/qemu.sh --machine {{machine}} --mode {{mode}} --smp {{n}} --job bench --net hub --append exo.bench=net --log out/bench-net.log | grep -E '^(BENCH,net|NETCHECK)'
    if [ "{{mode}}" != icount ] && [ "$(id -u)" = 0 ]; then EXO_TAP_STATS=out/bench-net-mq.taps scripts/qemu.sh --machine {{machine}} --mode {{mode}} --smp {{n}} --job contended --net tap-mq --append exo.bench=net --log out/bench-net-mq.log | grep -E '^(BENCH,net|NETMQ)'; cat out/bench-net-mq.taps; fi

# Serve HTTP (port 80 -> 127.0.0.1:8080), UDP echo (7 -> 8007) and ping from N CPUs until Ctrl-C.
serve n="2" machine="q35": build
    scripts/serve.sh run {{n}} {{machine}}

# HTTP load from the host with wrk at 1, 2 and 4 CPUs: http.rps.<n> / http.lat.<n> rows.
bench-serve cpus="1 2 4": build
    scripts/serve.sh bench "{{cpus}}"

# Kernel tests at one configuration. cpu: a QEMU model, default max (host under kvm).
ktest n="4" machine="q35" cpu="" mode="tcg": build
    scripts/qemu.sh --machine {{machine}} --mode {{mode}} {{ if cpu != "" { "--cpu " + cpu } else { "" } }} --smp {{n}} --job test

# Every test: lint, host tests, kernel tests across the QEMU matrix. Ends with `N passed, N failed`.
test:
    bash ci/test.sh

# exo-sync's host tests under Miri (a nightly toolchain with Miri; ci/setup.sh adds one).
miri:
    bash scripts/miri.sh

# rustfmt and clippy, host and kernel target.
check:
    cargo fmt --all --check
    cargo clippy --workspace --exclude exo --all-targets --all-features -- -D warnings
    cargo clippy --workspace --exclude exo-native-bench --exclude exo-linux-peer --target x86_64-unknown-none -- -D warnings

# What Exo-OS would do with each CPU a raw MADT lists (default: this machine's; reading it needs root).
madt file="/sys/firmware/acpi/tables/APIC":
    @cargo run -q -p exo-acpi --bin exo-madt -- {{file}}

# Build the user programs (user/, and user/c/hello.c with gcc) into target/initrd.cpio ($CARGO_TARGET_DIR/initrd.cpio when set).
initrd:
    scripts/mkinitrd.sh
