#!/usr/bin/env bash
# Kernel code coverage of the kernel's own test runs, from QEMU's translation log: which
# lines of this repository's kernel code ran at least once, and which never did.
#
#   scripts/kcov.sh [--smp N] [--machine M] [--runs "test net init bench"] [--out DIR] [--top K]
#
# Boots the release kernel once per run under TCG through qemu.sh with its translation log
# (`EXO_QEMU_TRACE`: `-d in_asm`) read from a FIFO (runs: `test`, the kernel
# tests with the initrd; `net`, the `net.` and `pci.` tests on two virtio-net NICs on a QEMU
# hub; `init`, /init with its fault, thread, IPC, fuzzer (2k calls per CPU), fake-nginx and
# watchdog suites (`exo.init_arg=0x2000000f5`); `bench`, the single-CPU benchmark suite;
# default all four): QEMU logs each block of guest code as it translates it, once
# (again only after a translation-cache flush), so the log is small and the run about 1.7
# times as long as without it (the test job at -smp 4: 27 s against 16 s here). Every
# instruction of a logged block is counted as run: a block ends at the first branch, so only
# an exception in the middle of a block (a page fault on one of its loads) can leave
# instructions after it counted that did not run.
#
# The kernel's instructions are mapped to source lines by its DWARF line table (`objdump
# -l`: the innermost inlined location). A line of this repository's files is *code* when an
# instruction maps to it, *covered* when one of those ran. Lines that inline to library code
# (core's atomics, say) count for that library, not for the line that called them, and code
# the compiler removed has no line at all: these are line-table figures, not a source
# measure. Writes DIR (default out/kcov): `report.txt` (per folder and per file, then the
# functions of this repository's files that never ran), `uncovered.txt` (every file's
# uncovered lines as ranges) and `kcov.svg` (covered share per folder). Prints the report's
# summary. Needs the kernel built (`just build`) and, for `test` and `init`, the initrd
# (`scripts/mkinitrd.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

smp=4 machine=q35 runs="test net init bench" out=out/kcov top=40
while [ $# -gt 0 ]; do
    case $1 in
        --smp) smp=$2; shift 2 ;;
        --machine) machine=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --top) top=$2; shift 2 ;;
        *) echo "kcov.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
    esac
done
kernel=$exo_kernel
[ -f "$kernel" ] || { echo "kcov.sh: build the kernel first (just build)" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d /tmp/kcov.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One logged run: $1 its name (above), booted by qemu.sh with its translation log
# ($EXO_QEMU_TRACE) read from a FIFO. Its distinct translated addresses go to
# $work/$1.addrs.
logged() {
    local run=$1 fifo="$work/$1.fifo" opts=(--initrd "$exo_initrd") job=test append="" rc=0
    case $run in
        test) ;;
        net) append="exo.test=net.,pci."; opts+=(--net hub) ;;
        init) job=init; append="exo.init_arg=0x2000000f5" ;;
        bench) job=bench; opts=() ;;
        *) echo "kcov.sh: unknown run $run (test, net, init, bench)" >&2; exit 2 ;;
    esac
    [ ${#opts[@]} = 0 ] || [ -f "$exo_initrd" ] || { echo "kcov.sh: no initrd (scripts/mkinitrd.sh)" >&2; exit 2; }
    mkfifo "$fifo"
    awk '/^0x[0-9a-f]+:/ { a = substr($1, 1, length($1) - 1); if (!(a in s)) { s[a] = 1; print a } }' \
        "$fifo" > "$work/$run.addrs" &
    local agg=$! start=$SECONDS
    EXO_QEMU_TRACE=$fifo scripts/qemu.sh --kernel "$kernel" --machine "$machine" --mode tcg --smp "$smp" \
        --job "$job" --append "$append" "${opts[@]}" --log "$work/$run.serial" --timeout 1800 \
        >/dev/null 2>"$work/$run.err" || rc=$?
    wait "$agg"
    # A failed run's coverage still counts.
    if [ "$rc" != 0 ]; then
        echo "kcov.sh: warning: the $run run did not end in the kernel's success (qemu.sh exit $rc); its coverage is kept" >&2
        tail -3 "$work/$run.serial" "$work/$run.err" >&2
    fi
    echo "kcov: $run run: $(wc -l < "$work/$run.addrs") distinct addresses, $((SECONDS - start)) s" >&2
}
for r in $runs; do
    logged "$r"
done
cat "$work"/*.addrs > "$work/all.addrs"

python3 - "$kernel" "$work/all.addrs" "$out" "$top" "$runs, $machine -smp $smp" <<'EOF'
import collections, html, os, re, subprocess, sys
kernel, addrs, out, top, what = sys.argv[1:6]
top = int(top)
ROOT = os.getcwd() + "/"
UPPER = 0xffff800000000000
ran = set()
for line in open(addrs):
    a = int(line, 16)
    if a >= UPPER:
        ran.add(a)

# Every instruction of the kernel: its function and its line (DWARF line table).
dis = subprocess.run(["objdump", "-d", "-l", "-C", "--no-show-raw-insn", kernel],
                     capture_output=True, text=True, check=True).stdout
func, loc = None, None
insn_re = re.compile(r"^([0-9a-f]{16}):\s")
func_re = re.compile(r"^[0-9a-f]{16} <(.*)>:$")
line_re = re.compile(r"^(/\S+):(\d+)(?: \(discriminator \d+\))?$")
code = collections.defaultdict(set)      # file -> lines with code
hit = collections.defaultdict(set)       # file -> lines that ran
fn_total, fn_ran, fn_file = collections.Counter(), collections.Counter(), {}
fn_lines = collections.defaultdict(set)  # function -> its (file, line) in this repository
for l in dis.splitlines():
    m = insn_re.match(l)
    if m:
        a = int(m.group(1), 16)
        r = a in ran
        if func:
            fn_total[func] += 1
            fn_ran[func] += r
        if loc and loc[0].startswith(ROOT):
            f = loc[0][len(ROOT):]
            code[f].add(loc[1])
            if r:
                hit[f].add(loc[1])
            if func:
                fn_file.setdefault(func, f)
                fn_lines[func].add((f, loc[1]))
        continue
    m = func_re.match(l)
    if m:
        func, loc = m.group(1), None
        continue
    m = line_re.match(l)
    if m:
        loc = (m.group(1), int(m.group(2)))

def folder(f):
    m = re.match(r"kernel/src/([a-z_]+)/", f)
    if m:
        return "kernel/src/" + m.group(1)
    if f.startswith("kernel/src/"):
        return "kernel/src (top)"
    m = re.match(r"(kernel/[a-z_]+)/", f)
    if m:
        return m.group(1)
    return f.split("/")[0]

def is_test(f):
    b = os.path.basename(f)
    return b.startswith("tests") or b == "test.rs" or "/tests/" in f

by_folder = collections.defaultdict(lambda: [0, 0])
for f in code:
    k = folder(f) + (" (tests)" if is_test(f) else "")
    by_folder[k][0] += len(code[f])
    by_folder[k][1] += len(hit[f])
tot = sum(v[0] for k, v in by_folder.items() if "(tests)" not in k)
cov = sum(v[1] for k, v in by_folder.items() if "(tests)" not in k)
rep = []
rep.append("kernel line coverage (%s): %d of %d lines with code ran (%.1f%%), tests' own files apart"
           % (what, cov, tot, 100.0 * cov / max(tot, 1)))
rep.append("")
rep.append("== by folder: lines ran / lines with code")
for k in sorted(by_folder, key=lambda k: (k.endswith("(tests)"), k)):
    t, c = by_folder[k]
    rep.append("%6.1f%%  %6d / %-6d  %s" % (100.0 * c / max(t, 1), c, t, k))
rep.append("")
rep.append("== by file (not the tests' own), most uncovered lines first")
files = sorted((f for f in code if not is_test(f)), key=lambda f: -(len(code[f]) - len(hit[f])))
for f in files[:top]:
    t, c = len(code[f]), len(hit[f])
    rep.append("%6d uncovered  %6.1f%%  %s" % (t - c, 100.0 * c / max(t, 1), f))
rep.append("")
rep.append("== functions of this repository's files (not the tests') that never ran, by lines no")
rep.append("   other copy ran either (an out-of-line copy of code its callers inlined is left out)")
never = []
for fn in fn_total:
    if fn_ran[fn] or fn not in fn_file or is_test(fn_file[fn]):
        continue
    dark = [l for l in fn_lines[fn] if l[1] not in hit[l[0]]]
    if dark:
        never.append((len(dark), fn_total[fn], fn))
never.sort(reverse=True)
rep.append("%d functions, %d lines" % (len(never), sum(n for n, _, _ in never)))
for n, size, fn in never[:top]:
    rep.append("%5d lines %6d insns  %-60s %s" % (n, size, fn[:60], fn_file[fn]))
with open(os.path.join(out, "report.txt"), "w") as o:
    o.write("\n".join(rep) + "\n")
    o.write("\n== every never-run function (lines no other copy ran, instructions)\n")
    for n, size, fn in never:
        o.write("%5d %6d  %s  %s\n" % (n, size, fn, fn_file[fn]))

def ranges(ls):
    ls = sorted(ls)
    res, s, p = [], None, None
    for x in ls:
        if s is None:
            s = p = x
        elif x == p + 1:
            p = x
        else:
            res.append((s, p)); s = p = x
    if s is not None:
        res.append((s, p))
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in res)

with open(os.path.join(out, "uncovered.txt"), "w") as o:
    for f in sorted(code):
        miss = code[f] - hit[f]
        if miss:
            o.write("%s: %s\n" % (f, ranges(miss)))

# The chart: covered share per folder (not the tests' own files).
rows = [(k, v) for k, v in sorted(by_folder.items()) if "(tests)" not in k and v[0] >= 20]
W, L, BAR, GAP = 760, 190, 16, 6
H = 50 + len(rows) * (BAR + GAP) + 20
o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
     '<rect width="100%" height="100%" fill="white"/>',
     '<text x="10" y="22" font-size="14">Kernel lines that ran in %s: %.1f%% of %d</text>'
     % (html.escape(what), 100.0 * cov / max(tot, 1), tot)]
for i, (k, (t, c)) in enumerate(rows):
    y = 40 + i * (BAR + GAP)
    share = c / max(t, 1)
    o.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (L - 6, y + 12, html.escape(k)))
    o.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="#ddd"/>' % (L, y, W - L - 80, BAR))
    o.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="#4e79a7"><title>%d of %d lines</title></rect>'
             % (L, y, (W - L - 80) * share, BAR, c, t))
    o.append('<text x="%d" y="%d">%.0f%% of %d</text>' % (W - 74, y + 12, 100 * share, t))
o.append("</svg>")
with open(os.path.join(out, "kcov.svg"), "w") as f:
    f.write("\n".join(o) + "\n")
print("\n".join(rep[:2 + len(by_folder) + 2]))
print("kcov: wrote %s/report.txt, %s/uncovered.txt, %s/kcov.svg" % (out, out, out))
EOF
