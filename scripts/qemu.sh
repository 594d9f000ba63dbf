#!/usr/bin/env bash
# Boot the Exo-OS kernel in QEMU and return the kernel's verdict.
#   scripts/qemu.sh [--machine q35|pc|microvm|microvm-noacpi|q35x] [--mode tcg|icount|kvm] [--cpu MODEL] [--smp N]
#                   [--mem SIZE] [--job boot|test|bench|contended|init|serve|linux] [--append "extra args"]
#                   [--log FILE] [--timeout SECONDS] [--kernel PATH] [--initrd FILE [--raw-initrd]]
#                   [--net none|hub|hub-mixed|user|tap-mq] [--queues N]
#   --cpu: the QEMU CPU model; default max (tcg, icount) or host (kvm). Under kvm +invtsc is
#   added to the model given (the kernel's clocks need an invariant TSC): --cpu EPYC boots
#   -cpu EPYC,+invtsc.
#   --job: exo.job= for the kernel (README, Interface contract); serve runs until QEMU stops
#   (scripts/serve.sh); linux is for the Linux peer (scripts/compare-linux.sh boots Linux).
#   --timeout: seconds before QEMU is ended (0: never); default $EXO_QEMU_TIMEOUT, else 180
#   plus 1 per CPU past 64 (QEMU's own start-up grows with the CPU count: 1024 CPUs get 1140).
#   --kernel: default the release kernel in cargo's target folder ($CARGO_TARGET_DIR when set,
#   else target/: scripts/lib.sh), where `just build` puts it.
#   --net hub: two virtio-net NICs on one QEMU hub (what one sends, the other receives);
#   --net user: one NIC on QEMU user networking, host 127.0.0.1:$EXO_HTTP_PORT (8080) ->
#   guest TCP 80 and 127.0.0.1:$EXO_UDP_PORT (8007) -> guest UDP 7.
#   --net tap-mq (root): NIC 0 with --queues N queue pairs (default: the CPU count) on a
#   multi-queue tap, NIC 1 with one pair on a second tap, both taps on a host bridge made for
#   this run (so each NIC receives what the other sends, the host's flow hash spreading
#   flows over NIC 0's queues); removed when QEMU exits. $EXO_TAP_STATS names a file that
#   gets the host's counters of both taps afterwards.
#   virtio-pci on q35/pc/q35x, virtio-mmio (modern) on microvm (named by the DSDT) and
#   microvm-noacpi (named on the command line; no MADT there: one CPU).
# $EXO_QEMU_MONITOR=PATH: the QEMU monitor on the FIFOs PATH.in and PATH.out (made by the
# caller with mkfifo; e.g. `echo "mce 1 1 0xb600000000000000 0x5 0x1000 0" > PATH.in`
# injects a machine check on CPU 1). Without it, no monitor.
# $EXO_QEMU_TRACE=PATH: QEMU's translation log (`-d in_asm`: each block of guest code once,
# as it is translated) written to PATH (a FIFO works; scripts/kcov.sh reads one).
# Exit status: 0 when the kernel reported success (QEMU exit 33), 1 when it reported failure
# (QEMU exit 35), 2 for anything else (triple fault exits 0, timeout, QEMU error).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
machine=q35 mode=tcg cpu="" smp=4 mem=512M job=boot extra="" log="" tmo="" initrd=""
net=none queues=""
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
kernel=$exo_kernel
while [ $# -gt 0 ]; do
    case "$1" in
        --machine) machine=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --cpu) cpu=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --job) job=$2; shift 2 ;;
        --append) extra=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
        --timeout) tmo=$2; shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        --initrd) initrd=$2; shift 2 ;;
        --raw-initrd) raw_initrd=1; shift ;;
        --net) net=$2; shift 2 ;;
        --queues) queues=$2; shift 2 ;;
        -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#'; exit 0 ;;
        *) echo "qemu.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
# The default time limit for --smp $1: 180 s, plus 1 s per CPU past 64. Until 2026-12-06 it
# was 180 s at any count, and `just qemu-smp 1024 q35x` (157 s in one CI run) could be ended
# on a loaded host (found by review).
default_timeout() { # smp
    local n=$1
    case $n in ''|*[!0-9]*) n=0 ;; esac
    echo $(( 180 + (n > 64 ? n - 64 : 0) ))
}
tmo=${tmo:-${EXO_QEMU_TIMEOUT:-$(default_timeout "$smp")}}
# The log is made (its folder too) before anything can fail: a run that stops early leaves
# an empty log, never an older run's, and a log that cannot be written stops the run before
# QEMU starts. Until 2026-12-06 tee failed to open a log in a missing folder, the log was
# lost and the script still exited 0 with the kernel's verdict (found by review).
if [ -n "$log" ]; then
    { mkdir -p "$(dirname "$log")" && : > "$log"; } 2>/dev/null \
        || { echo "qemu.sh: cannot write the log $log" >&2; exit 2; }
fi
args() { grep -v '^#' "$root/configs/qemu/$1.args" | tr '\n' ' '; }
# The -cpu value for mode $1 and --cpu $2: the model given, else max (host under kvm); kvm
# adds +invtsc. Until 2026-12-06 kvm's profile hard-coded -cpu host,+invtsc and --cpu was
# ignored under kvm without a word (found by review).
cpu_model() { # mode cpu
    if [ "$1" = kvm ]; then echo "${2:-host},+invtsc"; else echo "${2:-max}"; fi
}
[ -f "$root/configs/qemu/$machine.args" ] || { echo "qemu.sh: no machine profile '$machine'" >&2; exit 2; }
[ -f "$root/configs/qemu/$mode.args" ] || { echo "qemu.sh: no mode profile '$mode'" >&2; exit 2; }
[ -f "$kernel" ] || { echo "qemu.sh: no kernel at $kernel (run 'just build')" >&2; exit 2; }
initrd_arg=()
if [ -n "$initrd" ]; then
    [ -f "$initrd" ] || { echo "qemu.sh: no initrd at $initrd (run 'just initrd')" >&2; exit 2; }
    # microvm keeps its ACPI tables in RAM's last page; QEMU aims the initrd's end at that
    # page's start and rounds the initrd's start up to a page boundary, so an initrd whose
    # size is not a multiple of 4 KiB runs up to 4095 bytes into the tables (seen: the XSDT
    # read as zeros and -smp 64 booting one CPU; the kernel names the overlap). Pad a copy.
    size=$(stat -c %s "$initrd")
    # --raw-initrd passes it as it is (CI: the kernel must name the overlap).
    if [ $((size % 4096)) != 0 ] && [ -z "${raw_initrd:-}" ]; then
        padded=$(mktemp "${TMPDIR:-/tmp}/exo-initrd.XXXXXX")
        trap 'rm -f "$padded"' EXIT # replaced by net_cleanup (which removes it too) for taps
        cp "$initrd" "$padded" && truncate -s %4096 "$padded"
        initrd=$padded
    fi
    initrd_arg=(-initrd "$initrd")
fi
if [ "$mode" = kvm ]; then
    [ -w /dev/kvm ] || { echo "qemu.sh: --mode kvm needs a usable /dev/kvm" >&2; exit 2; }
    # /dev/kvm without vmx/svm in the host's CPU flags (or with the kvm_pvm module) is nested
    # software virtualization: rdtsc traps (~20,000 ticks a pair), and its instruction
    # emulator ends QEMU with "KVM internal error" at the kernel's first clac (SMAP, at the
    # first trap entry; int N, xgetbv and ring 3 fail there too: README, Modes). Its numbers
    # would not be cycles anyway: refuse unless forced.
    if ! grep -qwE 'vmx|svm' /proc/cpuinfo || [ -d /sys/module/kvm_pvm ]; then
        pvm=""; [ -d /sys/module/kvm_pvm ] && pvm=", kvm_pvm loaded"
        if [ -z "${EXO_KVM_FORCE:-}" ]; then
            echo "qemu.sh: this host's KVM is nested software virtualization (no vmx/svm flag$pvm): rdtsc traps, numbers would not be cycles. Set EXO_KVM_FORCE=1 to run anyway (the kernel then reports mode kvm-trapped)." >&2
            exit 2
        fi
        echo "qemu.sh: warning: KVM here is nested software virtualization; ticks are not cycles (mode kvm-trapped)" >&2
    fi
fi
cpu_arg=(-cpu "$(cpu_model "$mode" "$cpu")")
net_arg=()
if [ "${machine%-noacpi}" = microvm ]; then
    nic=virtio-net-device; net_arg=(-global virtio-mmio.force-legacy=false)
else
    nic=virtio-net-pci
fi
case $net in
    none) net_arg=() ;;
    hub|hub-mixed)
        for i in 0 1; do
            # Both NICs offer VIRTIO_F_IN_ORDER; with hub-mixed only NIC 0 does, so the tests
            # cover the driver's out-of-order path too.
            order=$([ $i = 0 ] || [ "$net" = hub ] && echo on || echo off)
            net_arg+=(-netdev "hubport,id=hp$i,hubid=0" -device "$nic,netdev=hp$i,mac=52:54:00:12:34:0$((i + 1)),in_order=$order")
        done ;;
    user)
        net_arg+=(-netdev "user,id=u0,hostfwd=tcp:127.0.0.1:${EXO_HTTP_PORT:-8080}-:80,hostfwd=udp:127.0.0.1:${EXO_UDP_PORT:-8007}-:7"
                  -device "$nic,netdev=u0,mac=52:54:00:12:34:56") ;;
    tap-mq)
        [ "$(id -u)" = 0 ] || { echo "qemu.sh: --net tap-mq needs root (it makes taps and a bridge)" >&2; exit 2; }
        [ -c /dev/net/tun ] || { echo "qemu.sh: --net tap-mq needs /dev/net/tun" >&2; exit 2; }
        q=${queues:-$smp}
        tag=$(( $$ % 100000 ))
        tapA=exoA$tag tapB=exoB$tag br=exobr$tag
        net_cleanup() {
            if [ -n "${EXO_TAP_STATS:-}" ]; then
                for t in "$tapA" "$tapB"; do
                    echo "TAP,$t,rx_packets,$(cat /sys/class/net/$t/statistics/rx_packets 2>/dev/null || echo -),tx_packets,$(cat /sys/class/net/$t/statistics/tx_packets 2>/dev/null || echo -),tx_dropped,$(cat /sys/class/net/$t/statistics/tx_dropped 2>/dev/null || echo -)"
                done > "$EXO_TAP_STATS"
            fi
            ip link del "$br" 2>/dev/null; ip link del "$tapA" 2>/dev/null; ip link del "$tapB" 2>/dev/null
            rm -f "${padded:-}"
        }
        trap net_cleanup EXIT
        ip link add "$br" type bridge stp_state 0 forward_delay 0 || exit 2
        sysctl -qw "net.ipv6.conf.$br.disable_ipv6=1" 2>/dev/null
        ip tuntap add dev "$tapA" mode tap $([ "$q" -gt 1 ] && echo multi_queue) || exit 2
        ip tuntap add dev "$tapB" mode tap || exit 2
        for t in "$tapA" "$tapB"; do
            sysctl -qw "net.ipv6.conf.$t.disable_ipv6=1" 2>/dev/null
            ip link set "$t" master "$br" up || exit 2
        done
        ip link set "$br" up
        # The bridge floods until it learns: age 0 would flood always; the guests' MACs are
        # learnt from their first frames.
        mq=""
        if [ "$q" -gt 1 ]; then
            mq=",mq=on"
            # MSI-X vectors: one per queue plus the configuration change (PCI only).
            [ "$nic" = virtio-net-pci ] && mq="$mq,vectors=$((2 * q + 2))"
        fi
        net_arg+=(-netdev "tap,id=ta,ifname=$tapA,script=no,downscript=no,vhost=off,queues=$q"
                  -device "$nic,netdev=ta,mac=52:54:00:12:34:01,in_order=on$mq"
                  -netdev "tap,id=tb,ifname=$tapB,script=no,downscript=no,vhost=off"
                  -device "$nic,netdev=tb,mac=52:54:00:12:34:02,in_order=on") ;;
    *) echo "qemu.sh: --net none|hub|hub-mixed|user|tap-mq" >&2; exit 2 ;;
esac
# shellcheck disable=SC2046
cmd=(qemu-system-x86_64 $(args "$machine") $(args "$mode") "${cpu_arg[@]}" -smp "$smp" -m "$mem"
     -kernel "$kernel" "${initrd_arg[@]}" -append "exo.job=$job $extra"
     -serial stdio -display none -monitor "${EXO_QEMU_MONITOR:+pipe:}${EXO_QEMU_MONITOR:-none}" -no-reboot -nodefaults
     -device isa-debug-exit,iobase=0xf4,iosize=0x04 "${net_arg[@]}"
     ${EXO_QEMU_TRACE:+-d in_asm -D "$EXO_QEMU_TRACE"})
[ -n "${EXO_QEMU_VERBOSE:-}" ] && echo "+ ${cmd[*]}" >&2
# The UART sends CRLF; logs and pipes get plain LF lines.
if [ -n "$log" ]; then
    timeout --kill-after=5 "$tmo" "${cmd[@]}" < /dev/null | stdbuf -oL tr -d '\r' | tee "$log"
    st=("${PIPESTATUS[@]}")
    rc=${st[0]}
    # tee failed writing the log (141 is not that: the caller's reader went away, a `| head`).
    if [ "${st[2]}" != 0 ] && [ "${st[2]}" != 141 ]; then
        echo "qemu.sh: writing the log $log failed (tee exit ${st[2]}); QEMU exited $rc" >&2
        exit 2
    fi
else
    timeout --kill-after=5 "$tmo" "${cmd[@]}" < /dev/null | stdbuf -oL tr -d '\r'
    rc=${PIPESTATUS[0]}
fi
case $rc in
    33) exit 0 ;;
    35) exit 1 ;;
    124|137) echo "qemu.sh: timed out after ${tmo}s" >&2; exit 2 ;;
    0) echo "qemu.sh: QEMU exited 0 (triple fault or shutdown without a verdict)" >&2; exit 2 ;;
    *) echo "qemu.sh: QEMU exited $rc" >&2; exit 2 ;;
esac
