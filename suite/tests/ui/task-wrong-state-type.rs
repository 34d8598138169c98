use pool_runtime::{worker_task, Pool};

pub struct Classifier {
    hits: u64,
}

pub struct Other {
    seen: u64,
}

#[worker_task]
fn tally(o: &mut Other, row: u64) -> u64 {
    o.seen += 1;
    row
}

fn _never(pool: &Pool<Classifier>) {
    let _ = pool.map(tally, vec![1, 2, 3]);
}

fn main() {}
