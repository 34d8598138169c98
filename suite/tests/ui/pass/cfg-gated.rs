// A `#[cfg]` below the attribute removes the glue with the function.
use pool_runtime::worker_task;

#[worker_task]
#[cfg(any())]
fn gone(x: u64) -> u64 {
    x
}

#[worker_task]
#[cfg(all())]
fn kept(x: u64) -> u64 {
    x
}

fn main() {
    assert_eq!(kept(1), 1);
}
