use pool_runtime::{worker_task, Pool};

pub struct Table {
    factor: u64,
}

#[worker_task]
fn scale(t: &Table, x: u64) -> u64 {
    t.factor * x
}

fn _never(pool: &Pool<Table>) {
    let _: Result<Vec<u64>, _> = pool.map(scale, 0..10);
}

fn main() {
    assert_eq!(scale(&Table { factor: 3 }, 2), 6);
}
