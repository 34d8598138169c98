//! A program that forgot `pool_runtime::worker_mode()`: run as a worker, its
//! `main` runs instead, and builds a pool of its own (or, with `exit` as its
//! argument... it has none: with `SPAWN_NO_ENTRY_EXIT` set, it just ends).
//! `tests/spawn.rs` expects the driver's `build` to fail at once with a
//! message that names the missing line, and no process to be left.

use pool_runtime::{worker_init, Pool};

#[worker_init]
fn idle(_: &()) -> u8 {
    0
}

fn main() {
    if std::env::var_os("SPAWN_NO_ENTRY_EXIT").is_some() {
        println!("spawn_no_entry: ending without serving");
        return;
    }
    // What the program does when run by a user: build a pool of workers
    // started fresh. Run as a worker, this must fail, not start more.
    match Pool::builder().spawn().workers(2).build(idle, ()) {
        Ok(_) => println!("spawn_no_entry: built a pool"),
        Err(e) => {
            eprintln!("spawn_no_entry: {e}");
            std::process::exit(1);
        }
    }
}
