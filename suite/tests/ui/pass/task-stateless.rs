use pool_runtime::{worker_task, Pool};

#[worker_task]
fn square(x: u64) -> u64 {
    x * x
}

#[worker_task]
fn tick() -> u64 {
    1
}

pub struct Anything;

// A stateless task runs on a pool of any state.
fn _never(unit: &Pool<()>, other: &Pool<Anything>) {
    let _: Result<Vec<u64>, _> = unit.map(square, vec![1, 2, 3]);
    let _: Result<Vec<u64>, _> = other.map(square, vec![1, 2, 3]);
    let _: Result<Vec<u64>, _> = other.map(tick, vec![(), ()]);
}

fn main() {
    assert_eq!(square(3), 9);
    assert_eq!(tick(), 1);
}
