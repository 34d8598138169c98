//! A program that forgot `pool_runtime::worker_mode()`: run as a worker, its
//! `main` runs instead, and builds a pool of its own; or, as
//! `SPAWN_NO_ENTRY` says, just ends (`exit`) or does something else for a
//! long while (`sleep`).
//! `tests/spawn.rs` expects the driver's `build` to fail at once with a
//! message that names the missing line, and no process to be left.

use pool_runtime::{worker_init, Pool};

#[worker_init]
fn idle(_: &()) -> u8 {
    0
}

fn main() {
    match std::env::var("SPAWN_NO_ENTRY").as_deref() {
        Ok("exit") => {
            println!("spawn_no_entry: ending without serving");
            return;
        }
        Ok("sleep") => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            return;
        }
        _ => {}
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
