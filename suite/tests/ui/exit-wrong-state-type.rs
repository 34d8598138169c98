use pool_runtime::{worker_exit, Pool};

pub struct Classifier {
    hits: u64,
}

pub struct Other {
    seen: u64,
}

#[worker_exit]
fn report(o: Other) -> u64 {
    o.seen
}

fn _never(pool: Pool<Classifier>) {
    let _ = pool.join_with(report);
}

fn main() {}
