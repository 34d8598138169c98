//! A worker program built from other code than `tests/spawn.rs`: it
//! registers other functions. `spawn_refuses_a_worker_built_from_other_code`
//! points a pool at it and expects `build` to refuse it, naming the first
//! function that differs.

use pool_runtime::{worker_init, worker_task};

struct Idle;

#[worker_init]
fn idle(_: &()) -> Idle {
    Idle
}

#[worker_task]
fn square(_: &mut Idle, x: u64) -> u64 {
    x * x
}

fn main() {
    pool_runtime::worker_mode();
    let _ = (idle, square);
    println!("spawn_other_code: run as a worker program by tests/spawn.rs");
}
