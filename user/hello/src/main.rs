//! `/hello`: prints one line and exits 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

use exo_rt::println;

exo_rt::entry!(run);

fn run(_arg: u64) -> i32 {
    println!("hello: hello from pid {}", exo_rt::getpid());
    0
}
