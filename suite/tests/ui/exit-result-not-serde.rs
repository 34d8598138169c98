use pool_runtime::worker_exit;

pub struct Classifier {
    hits: u64,
}

/// Not `Serialize`: cannot travel back from a worker.
pub struct Summary {
    hits: u64,
}

#[worker_exit]
fn report(c: Classifier) -> Summary {
    Summary { hits: c.hits }
}

fn main() {}
