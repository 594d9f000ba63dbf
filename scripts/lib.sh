# shellcheck shell=bash disable=SC2034,SC2154 # sourced: $root is the caller's, the variables are for it
# Sourced by the scripts that build or boot (qemu.sh, run.sh, bench.sh, iprof.sh,
# mkinitrd.sh, compare-linux.sh, floor-ipc.sh, kcov.sh, ci/test.sh): what they must agree on.
# Needs $root, the repository's root.
#
# exo_target: cargo's target folder, absolute: $CARGO_TARGET_DIR when set (a relative one is
# taken from the repository's root, where the scripts and `just` run cargo), else
# $root/target. Every path to a built kernel, initrd or user program goes through it, so a
# script boots what cargo just built. Until 2026-12-06 the scripts that boot read ./target
# whatever CARGO_TARGET_DIR said, and `just test` with it exported built the new kernel
# elsewhere and tested an old one (found by review).
exo_target=${CARGO_TARGET_DIR:-target}
case $exo_target in /*) ;; *) exo_target=$root/$exo_target ;; esac
# The release kernel and the initrd mkinitrd.sh writes by default.
exo_kernel=$exo_target/x86_64-unknown-none/release/exo
exo_initrd=$exo_target/initrd.cpio
