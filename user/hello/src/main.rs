//! `/hello`: prints one line and exits 0. With argument 2, two lines, one `write` each
//! (`user.kill_kick_after_the_last_check_is_not_lost`: killed after the first, it must not
//! print the second).
#![cfg_attr(target_os = "none", no_std, no_main)]

use exo_rt::println;

exo_rt::entry!(run);

fn run(arg: u64) -> i32 {
    if arg == 2 {
        println!("hello: first line");
        println!("hello: second line");
        return 0;
    }
    println!("hello: hello from pid {}", exo_rt::getpid());
    0
}
