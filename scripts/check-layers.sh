#!/usr/bin/env bash
# The kernel's subsystems call down only (kernel/src/main.rs has the table). Every
# `crate::<module>` path in a subsystem's code must name the subsystem itself or a lower one;
# tests and bench rows (tests*.rs, bench.rs) are leaves and may use anything. Prints each
# upward reference and exits 1 if there is one.
set -euo pipefail
cd "$(dirname "$0")/../kernel/src"
declare -A rank=([sys]=0 [console]=0 [kprintln]=0 [mm]=1 [smp]=2 [sched]=3 [trap]=4 [dev]=5 [ipc]=6 [user]=7 [boot]=8 [harness]=9 [kbench]=9 [ktest]=9)
bad=0 checked=0
for f in $(find . -name '*.rs' ! -name 'tests*.rs' ! -name main.rs | grep -v '^\./[a-z]*/bench\.rs$' | sort) ./harness/bench.rs; do
    sub=${f#./}; sub=${sub%%/*}; sub=${sub%.rs}
    mine=${rank[$sub]:?unknown subsystem $sub (add it to scripts/check-layers.sh)}
    checked=$((checked + 1))
    while IFS=: read -r line used; do
        r=${rank[$used]:-}
        if [ -z "$r" ]; then
            echo "unknown module crate::$used in $f:$line"; bad=$((bad + 1))
        elif [ "$r" -gt "$mine" ]; then
            echo "upward: $f:$line ($sub) uses crate::$used"; bad=$((bad + 1))
        fi
    done < <(grep -no 'crate::[a-z_]*' "$f" | sed 's/crate:://' | sort -u -t: -k2,2)
done
echo "check-layers: $checked files, $bad upward reference(s)"
[ "$bad" -eq 0 ]
