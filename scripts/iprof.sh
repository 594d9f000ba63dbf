#!/usr/bin/env bash
# Differential instruction profiler: where the instructions of one benchmark row go.
#
#   scripts/iprof.sh --per N [--job J] [--base "ARGS"] [--probe "ARGS"]
#                    [--base-initrd F] [--probe-initrd F] [--user-elf F]
#                    [--machine M] [--smp N] [--top K] [--annotate FUNC]
#                    [--svg FILE [--mark N:LABEL]...]
#
# Boots the kernel twice under `-icount shift=0` with every executed instruction traced
# (`-accel tcg,one-insn-per-tb=on -d exec,nochain`, counted per address by awk as QEMU
# writes), once with the base command line (`--base`, `--base-initrd`) and once with the
# probe (`--probe`, `--probe-initrd`), which must run exactly the same thing plus N more
# operations of the row under study (same kernel, same programs: only a run-time knob may
# differ, or addresses would not match). Under icount both runs are deterministic, so the
# difference of the two histograms divided by N is the exact per-operation instruction
# profile: by function, by source line (innermost inlined frame), and with --annotate the
# executed instructions of one function with their counts. Addresses in the upper half
# are symbolized against the kernel, the others against --user-elf. --svg draws the
# per-operation total as one bar split by part (the user programs, the assembly stubs and
# compiler builtins (no line information), each kernel subsystem folder, arch and percpu), with a dashed line at each --mark (a target, a
# reference figure).
#
# Example (`just iprof-ipc`): ipc.rtt.64, /ubench's profile role making 0 or 1000 round trips
# (`arg = 0x50 << 56 | n`, started as the first process):
#   scripts/iprof.sh --job init --per 1000 --user-elf target/x86_64-unknown-none/release/exo-ubench \
#       --base "exo.init=/ubench exo.init_arg=0x5000000000000000" \
#       --probe "exo.init=/ubench exo.init_arg=0x50000000000003e8"
#
# Numbers are instructions (icount). Tracing costs about 40 s per 60 M executed
# instructions on this project's 2-core machines: keep the job short (a bench filter).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

per="" job=bench base="" probe="" base_initrd="" probe_initrd="" user_elf="" machine=microvm
smp=1 top=40 annotate="" svg="" marks=""
while [ $# -gt 0 ]; do
    case $1 in
        --per) per=$2; shift 2 ;;
        --job) job=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --probe) probe=$2; shift 2 ;;
        --base-initrd) base_initrd=$2; shift 2 ;;
        --probe-initrd) probe_initrd=$2; shift 2 ;;
        --user-elf) user_elf=$2; shift 2 ;;
        --machine) machine=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --top) top=$2; shift 2 ;;
        --annotate) annotate=$2; shift 2 ;;
        --svg) svg=$2; shift 2 ;;
        --mark) marks="$marks;$2"; shift 2 ;;
        *) echo "iprof.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
    esac
done
[ -n "$per" ] || { echo "iprof.sh: --per N (operations the probe adds) is required" >&2; exit 2; }
if [ "$job" = init ]; then
    [ -n "$base_initrd" ] || base_initrd=$exo_initrd
    [ -n "$probe_initrd" ] || probe_initrd=$base_initrd
fi
kernel=$exo_kernel
[ -f "$kernel" ] || { echo "iprof.sh: build the kernel first (just build)" >&2; exit 2; }
work=$(mktemp -d /tmp/iprof.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One traced run: $1 name, $2 extra command line, $3 initrd (may be empty), $4 kernel.
traced() {
    local name=$1 append=$2 initrd=$3 kern=$4 fifo="$work/$1.fifo"
    mkfifo "$fifo"
    awk -F'/' '/^Trace/ { c[$2]++ } END { for (k in c) print k, c[k] }' "$fifo" > "$work/$name.cnt" &
    local agg=$!
    local m=(-M "$machine")
    local rd=()
    [ -n "$initrd" ] && rd=(-initrd "$initrd")
    local rc=0
    timeout 1800 qemu-system-x86_64 "${m[@]}" -accel tcg,thread=single,one-insn-per-tb=on \
        -icount shift=0,align=off,sleep=off -seed 1 -rtc base=2020-01-01T00:00:00,clock=vm \
        -cpu max -smp "$smp" -m 512M -kernel "$kern" "${rd[@]}" \
        -append "exo.job=$job $append" -serial "file:$work/$name.serial" -display none \
        -monitor none -no-reboot -nodefaults -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -d exec,nochain -D "$fifo" || rc=$?
    wait "$agg"
    # isa-debug-exit: 33 is the kernel's success.
    if [ "$rc" != 33 ]; then
        echo "iprof.sh: the $name run ended with $rc (serial log: $work/$name.serial)" >&2
        tail -5 "$work/$name.serial" >&2
        trap - EXIT
        exit 1
    fi
    echo "iprof: $name run: $(wc -l < "$work/$name.cnt") distinct addresses" >&2
}
traced base "$base" "$base_initrd" "$kernel"
traced probe "$probe" "$probe_initrd" "$kernel"
grep -h '^BENCH' "$work/probe.serial" | cut -d, -f1-4 | sed 's/^/iprof: probe /' >&2 || true

python3 - "$work/base.cnt" "$work/probe.cnt" "$per" "$kernel" "$user_elf" "$top" "$annotate" \
    "$svg" "$marks" <<'EOF'
import bisect, collections, html, os, re, subprocess, sys
base, probe, per, kernel, user_elf, top, annotate, svg, marks = sys.argv[1:10]
per, top = float(per), int(top)
UPPER = 0xffff800000000000

def counts(path):
    d = {}
    for line in open(path):
        a, c = line.split()
        d[int(a, 16)] = int(c)
    return d

def symbols(elf):
    if not elf:
        return []
    out = subprocess.run(["nm", "-C", "-n", "--defined-only", elf], capture_output=True, text=True).stdout
    s = []
    for line in out.splitlines():
        p = line.split(" ", 2)
        if len(p) == 3 and p[1] in "tTwW":
            s.append((int(p[0], 16), p[2]))
    return s

A, B = counts(base), counts(probe)
diff = {pc: B.get(pc, 0) - A.get(pc, 0) for pc in set(A) | set(B)}
diff = {pc: c for pc, c in diff.items() if c}
tables = {True: symbols(kernel), False: symbols(user_elf)}
keys = {k: [a for a, _ in v] for k, v in tables.items()}

def func(pc):
    k = pc >= UPPER
    i = bisect.bisect_right(keys[k], pc) - 1
    return tables[k][i][1] if i >= 0 else ("?kernel" if k else "?user") + " %#x" % pc

byf = collections.Counter()
for pc, c in diff.items():
    byf[func(pc)] += c
total = sum(diff.values())
print("instructions per operation: %.1f (kernel %.1f, user %.1f)" % (
    total / per,
    sum(c for pc, c in diff.items() if pc >= UPPER) / per,
    sum(c for pc, c in diff.items() if pc < UPPER) / per))
print("\n== by function")
for f, c in byf.most_common(top):
    print("%9.1f  %s" % (c / per, f[:140]))

ROOT = os.getcwd() + "/"

def lines(elf, pcs):
    """Of each address, through inlining: the innermost (function, file:line), and the
    innermost frame in this repository's own files as a path from its root (the function's
    name where there is no line information: the assembly stubs)."""
    if not elf or not pcs:
        return {}
    out = subprocess.run(["addr2line", "-a", "-i", "-f", "-C", "-e", elf] + ["%#x" % p for p in pcs],
                         capture_output=True, text=True).stdout.splitlines()
    res, own, cur, i = {}, set(), None, 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = int(out[i], 16); i += 1
            continue
        path = out[i + 1].split(" ")[0].rsplit(":", 1)[0]
        if cur not in res:
            res[cur] = (out[i], out[i + 1].split("/")[-1].split(" ")[0], "(" + out[i][:60] + ")")
        if cur not in own and path.startswith(ROOT):
            own.add(cur)
            res[cur] = res[cur][:2] + (path[len(ROOT):],)
        i += 2
    return res

# One symbolization (addr2line) per program, for the sections below and the chart.
sym = {}
for upper in (True, False):
    sym.update(lines(kernel if upper else user_elf,
                     sorted(pc for pc in diff if (pc >= UPPER) == upper)))
byl, byo = collections.Counter(), collections.Counter()
for pc, (fn, loc, mine) in sym.items():
    byl["%-28s %s" % (loc, fn[:90])] += diff[pc]
    byo[mine] += diff[pc]
print("\n== by source line (innermost inlined frame)")
for l, c in byl.most_common(top):
    print("%9.1f  %s" % (c / per, l))
print("\n== by source file (innermost frame in this repository's files)")
for l, c in byo.most_common(top):
    print("%9.1f  %s" % (c / per, l))

def part(pc, mine):
    """The bar segment of an address: its program, stub, or kernel subsystem folder."""
    if pc < UPPER:
        return "user programs"
    if mine.startswith("("):
        return "assembly stubs and builtins"
    m = re.match(r"kernel/src/([a-z_]+)/", mine)
    if m:
        return "kernel/src/" + m.group(1)
    return "arch, percpu and the rest"

if svg:
    parts = collections.Counter()
    for pc, (_, _, mine) in sym.items():
        parts[part(pc, mine)] += diff[pc] / per
    # The order of a system call: the programs, the stubs, the kernel's subsystems (largest
    # first), then arch and percpu.
    rank = lambda n: (n != "user programs", n != "assembly stubs and builtins",
                      n == "arch, percpu and the rest", -parts[n])
    segs = [(n, parts[n]) for n in sorted(parts, key=rank) if parts[n] >= 0.5]
    refs = []
    for m in filter(None, marks.split(";")):
        v, _, label = m.partition(":")
        refs.append((float(v), label))
    total = sum(c for _, c in segs)
    full = max([total] + [v for v, _ in refs]) * 1.05
    W, L, R, Y, H = 900, 20, 20, 60, 46
    x = lambda v: L + (W - L - R) * v / full
    colors = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
              "#ff9da7", "#9c755f", "#bab0ac"]
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="12">' % (W, Y + H + 40 + 18 * ((len(segs) + 2) // 3))]
    o.append('<rect width="100%" height="100%" fill="white"/>')
    o.append('<text x="%d" y="22" font-size="14">%s: %.0f instructions per operation (icount)</text>'
             % (L, html.escape(os.environ.get("IPROF_TITLE", "iprof")), total))
    at = 0.0
    for k, (n, c) in enumerate(segs):
        col = colors[k % len(colors)]
        o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %.0f</title></rect>'
                 % (x(at), Y, x(at + c) - x(at), H, col, html.escape(n), c))
        if x(at + c) - x(at) > 26:
            o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="white">%.0f</text>'
                     % ((x(at) + x(at + c)) / 2, Y + H / 2 + 4, c))
        at += c
    for v, label in refs:
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-dasharray="4,3"/>'
                 % (x(v), Y - 14, x(v), Y + H + 6))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s (%g)</text>'
                 % (x(v), Y - 18, html.escape(label), v))
    for k, (n, c) in enumerate(segs):
        lx, ly = L + (k % 3) * 290, Y + H + 30 + 18 * (k // 3)
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (lx, ly - 10, colors[k % len(colors)]))
        o.append('<text x="%d" y="%d">%s: %.0f</text>' % (lx + 17, ly, html.escape(n), c))
    o.append("</svg>")
    with open(svg, "w") as f:
        f.write("\n".join(o) + "\n")
    print("\niprof: wrote %s" % svg)

if annotate:
    upper = None
    for k, syms in tables.items():
        for i, (a, name) in enumerate(syms):
            if name == annotate:
                lo, hi = a, syms[i + 1][0] if i + 1 < len(syms) else a + 0x10000
                upper = k
                break
        if upper is not None:
            break
    if upper is None:
        sys.exit("iprof.sh: no function named %r" % annotate)
    dis = subprocess.run(["objdump", "-d", "-l", "--no-show-raw-insn", "-M", "intel",
                          "--start-address=%#x" % lo, "--stop-address=%#x" % hi,
                          kernel if upper else user_elf], capture_output=True, text=True).stdout
    print("\n== %s: executed instructions per operation" % annotate)
    src = ""
    for line in dis.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s+(.*)$", line)
        if m:
            c = diff.get(int(m.group(1), 16), 0) / per
            if c:
                print("%6.1f  %s  %-48s %s" % (c, m.group(1), m.group(2)[:48], src))
        elif line.startswith("/"):
            src = line.split("/")[-1]
EOF
