#!/usr/bin/env bash
# The README's icount figures must be the baseline's (configs/icount-baseline.csv, what CI
# gates): every figure in a Markdown table whose header has a name column (`name` or `row`)
# and an instruction-count column (`icount`, `instructions (p50)`, `instructions`, or `value`
# or `Exo-OS p50 (suite)` with a `mode` column that says icount) is compared with the
# baseline's p50 for that name. In the Linux comparison's table (`Exo-OS p50 (suite)`), a
# figure noted "(user X)" or "(smp X)" is baseline row X's (until 2026-12-06 that table was
# not read, and ten of its figures had drifted: found by review).
#   scripts/check-readme-icount.sh [README.md] [configs/icount-baseline.csv]
# A cell may name several rows and give as many figures: "`alloc.4k` / `free.4k` | 10 / 14",
# "ipc.rtt.64.xcore.thread / .proc | 3828 / 3828" (a name starting with a dot replaces the
# first name's last part). A figure is the cell's leading number(s); a cell that starts with
# none ("-", "~153,000", "n/a") is not a figure. A row whose name is not in the baseline is
# left out, unless the row names a baseline row in parentheses ("4677
# (ctx.switch.fpu.eager)"). syscall.null and syscall.getpid are left out: the baseline has
# the kernel paths' figures, the README the user round trips of the same names. Fails on a
# figure that differs, a cell with more figures than names or the reverse, and a README where
# no figure was checked (a table renamed out of reach). Until 2026-12-06 nothing checked it,
# and five rows had drifted from the baseline (found by review).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
readme=${1:-$root/README.md}
base=${2:-$root/configs/icount-baseline.csv}
[ -f "$readme" ] || { echo "check-readme-icount: no $readme" >&2; exit 2; }
[ -f "$base" ] || { echo "check-readme-icount: no $base" >&2; exit 2; }
# shellcheck disable=SC2016 # an awk program: its $ fields are awk's
awk -v readme="$readme" '
    function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
    function clean(s) { gsub(/[`*]/, "", s); return trim(s) }
    # Splits a table line into cell[1..n]; returns n.
    function cells(line,    n, i, parts) {
        sub(/^[ \t]*\|/, "", line); sub(/\|[ \t]*$/, "", line)
        n = split(line, parts, "|")
        for (i = 1; i <= n; i++) cell[i] = trim(parts[i])
        return n
    }
    FNR == NR { if (FNR > 1 && $0 ~ /,/) { split($0, f, ","); want[f[1]] = f[2] }; next }
    !/^[ \t]*\|/ { in_table = 0; ncol = vcol = mcol = 0; next }
    !in_table {
        in_table = 1; header = 1
        n = cells($0)
        for (i = 1; i <= n; i++) {
            h = tolower(clean(cell[i]))
            if (h == "name" || (h == "row" && !ncol)) ncol = i
            if (h == "icount" || h == "instructions (p50)" || h == "instructions" || h == "value" || h == "exo-os p50 (suite)") { vcol = i; vname = h }
            if (h == "mode") mcol = i
        }
        if ((vname == "value" || vname == "exo-os p50 (suite)") && !mcol) vcol = 0
        if (ncol && vcol) tables++
        next
    }
    header { header = 0; next } # the |---| line
    ncol && vcol {
        n = cells($0)
        if ((vname == "value" || vname == "exo-os p50 (suite)") && clean(cell[mcol]) != "icount") next
        v = clean(cell[vcol])
        # "714 (user ipc.rtt.64)": the figure is the one of baseline row ipc.rtt.64.
        suite_name = ""
        if (vname == "exo-os p50 (suite)" && match(v, /\((user|smp) [a-z0-9_.]+\)/)) {
            suite_name = substr(v, RSTART + 1, RLENGTH - 2); sub(/^[a-z]+ /, "", suite_name)
        }
        if (!match(v, /^[0-9][0-9,]*( \/ [0-9][0-9,]*)*/)) next
        nv = split(substr(v, 1, RLENGTH), vals, / \/ /)
        nn = split(clean(cell[ncol]), names, / \/ /)
        for (i = 1; i <= nn; i++) {
            names[i] = trim(names[i])
            if (names[i] ~ /^\./) { first = names[1]; sub(/\.[^.]*$/, "", first); names[i] = first names[i] }
        }
        if (suite_name != "") names[1] = suite_name
        if (nn == 1 && !(names[1] in want)) {
            # A row judged by another baseline row, named in parentheses elsewhere in it.
            rest = $0
            while (match(rest, /\([a-z0-9_.]+\)/)) {
                cand = substr(rest, RSTART + 1, RLENGTH - 2); rest = substr(rest, RSTART + RLENGTH)
                if (cand in want) { names[1] = cand; break }
            }
        }
        if (nv != nn) {
            printf "%s:%d: %d name(s) but %d figure(s): %s\n", readme, FNR, nn, nv, $0
            bad++; next
        }
        for (i = 1; i <= nn; i++) {
            name = names[i]; got = vals[i]; gsub(/,/, "", got)
            if (name == "syscall.null" || name == "syscall.getpid" || !(name in want)) continue
            checked++
            if (got + 0 != want[name] + 0) {
                printf "%s:%d: %s: the README says %s, the baseline %s\n", readme, FNR, name, got, want[name]
                bad++
            }
        }
    }
    END {
        if (checked == 0) { printf "check-readme-icount: no icount figure found in %s (%d table(s) with an icount column)\n", readme, tables; exit 1 }
        if (bad) { printf "check-readme-icount: %d of the README'\''s icount figures differ from the baseline (%d checked)\n", bad, checked; exit 1 }
        printf "check-readme-icount: %d icount figures in %d tables match the baseline\n", checked, tables
    }
' "$base" "$readme"
