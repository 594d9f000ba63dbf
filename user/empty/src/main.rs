//! `/empty`: exits 0 at once (what `proc.spawn` spawns and waits for).
#![cfg_attr(target_os = "none", no_std, no_main)]

exo_rt::entry!(run);

fn run(_arg: u64) -> i32 {
    0
}
