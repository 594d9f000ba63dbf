#!/usr/bin/env bash
# Extracts the BENCH lines of an Exo-OS serial log into a CSV.
#
#   scripts/extract-benches.sh [--strict] <serial.log> [out.csv]   (default out: bench_results.csv)
#
# Output header: suite,mode,name,n,mean,min,max,p50,p95,p99
# suite and mode come from the latest SUITE line before each BENCH line (empty if none).
# CRLF line ends are accepted; other lines are ignored; BENCH lines with the wrong field
# count, non-integer fields (or above 2^64-1) or inconsistent statistics are skipped with a
# warning. A SUITE line cut short is named, and the rows after it get an empty suite and
# mode (until 2026-12-04 they kept the previous suite's: a TCG row could pass as kvm). The
# rows of a suite with an `ERROR,bench` line (the kernel's verdict that its results are not
# to be trusted) are skipped with a warning. Statistics are compared as exact integers
# (awk's doubles took two values above 2^53 for equal, and the report refused the file).
# --strict: any of these, an END line whose count differs from the suite's rows, or a suite
# without END, is an error (exit 1, out.csv untouched); otherwise they are warnings.
# Exits 1 (and leaves out.csv untouched) when the log holds no valid BENCH line, 2 on
# usage errors.
# Needs only bash and a POSIX awk.
set -euo pipefail

usage() { echo "usage: $0 [--strict] <serial.log> [out.csv]" >&2; exit 2; }
strict=0
args=()
for a in "$@"; do
    if [ "$a" = --strict ]; then strict=1; else args+=("$a"); fi
done
[ ${#args[@]} -ge 1 ] && [ ${#args[@]} -le 2 ] || usage
log=${args[0]}
out=${args[1]:-bench_results.csv}
[ -f "$log" ] && [ -r "$log" ] || { echo "extract-benches: cannot read '$log'" >&2; exit 2; }

tmp=$(mktemp "${out}.XXXXXX") || { echo "extract-benches: cannot write next to '$out'" >&2; exit 2; }
trap 'rm -f "$tmp"' EXIT

status=0
awk -F',' -v OFS=',' -v strict="$strict" '
# Decimal digit strings compared exactly, whatever their length.
function norm(x) { sub(/^0+/, "", x); return (x == "") ? "0" : x }
function le(a, b) {
    a = norm(a); b = norm(b)
    return length(a) < length(b) || (length(a) == length(b) && (a "") <= (b ""))
}
function warn(msg) { printf "extract-benches: %s\n", msg > "/dev/stderr" }
# The rows of the open suite are held until it ends, so that an ERROR,bench line after
# them still drops them.
function flush(   i) {
    if (broken && held > 0) {
        warn(sprintf("suite %s: ERROR,bench in the log, its %d row(s) skipped", (label == "" ? "(unnamed)" : label), held))
        problems++
    } else {
        for (i = 1; i <= held; i++) { print buf[i]; count++ }
    }
    held = 0; broken = 0; open = 0
}
BEGIN { print "suite,mode,name,n,mean,min,max,p50,p95,p99"; suite = ""; mode = ""; count = 0; bad = 0; problems = 0; held = 0; open = 0 }
{ sub(/\r+$/, "") }
/^SUITE,/ {
    flush()
    open = 1
    if (NF >= 8) { suite = $2; mode = $5; label = suite; insuite[suite] = 1; seen[suite] = 0 }
    else {
        warn(sprintf("malformed SUITE line (%d fields), the rows after it have no suite or mode: %s", NF, $0))
        problems++
        suite = ""; mode = ""; label = ""
    }
    next
}
/^END,/ {
    if (NF == 3 && ($2 in seen) && seen[$2] != $3) {
        warn(sprintf("suite %s: END says %s results, log has %d", $2, $3, seen[$2]))
        problems++
    }
    if (NF == 3) delete insuite[$2]
    flush()
    next
}
/^ERROR,bench/ {
    if (open) broken = 1
    else { warn(sprintf("ERROR,bench line outside a suite: %s", $0)); problems++ }
    next
}
/^BENCH,/ {
    ok = (NF == 9 && $2 ~ /[^ \t]/)
    for (i = 3; ok && i <= 9; i++) {
        if ($i !~ /^[0-9]+$/) ok = 0
        # The report reads u64: 18446744073709551615 at most.
        else if (!le($i, "18446744073709551615")) ok = 0
    }
    if (!ok) { bad++; next }
    # The report refuses a whole CSV over one inconsistent row (n >= 1, min <= p50 <= p95
    # <= p99 <= max, min <= mean <= max): such a row (a run with no request, say) is
    # skipped here with its name instead (until 2026-12-04 it stopped `just run` after
    # every QEMU run; found by review).
    if (!(norm($3) != "0" && le($5, $7) && le($7, $8) && le($8, $9) && le($9, $6) && le($5, $4) && le($4, $6))) {
        warn(sprintf("skipped %s: inconsistent statistics", $2))
        bad++
        next
    }
    if (suite in seen) seen[suite]++
    row = suite OFS mode OFS $2 OFS $3 OFS $4 OFS $5 OFS $6 OFS $7 OFS $8 OFS $9
    if (open) buf[++held] = row
    else { print row; count++ }
}
END {
    flush()
    for (s in insuite) { warn(sprintf("suite %s has no END line (run cut short?)", s)); problems++ }
    if (bad > 0) warn(sprintf("skipped %d malformed BENCH line(s)", bad))
    if (count == 0) exit 3
    if (strict && bad + problems > 0) {
        warn(sprintf("--strict: %d skipped line(s), %d other problem(s)", bad, problems))
        exit 4
    }
    warn(sprintf("%d result(s)", count))
}
' "$log" > "$tmp" || status=$?

if [ "$status" -eq 3 ]; then
    echo "extract-benches: no BENCH line in '$log'" >&2
    exit 1
elif [ "$status" -eq 4 ]; then
    echo "extract-benches: --strict: '$out' not written" >&2
    exit 1
elif [ "$status" -ne 0 ]; then
    echo "extract-benches: awk failed ($status)" >&2
    exit 1
fi
mv -f "$tmp" "$out"
trap - EXIT
echo "extract-benches: wrote $out" >&2
