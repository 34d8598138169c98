use pool_runtime::worker_task;

pub struct Classifier {
    hits: u64,
}

/// Not `Serialize` nor `Deserialize`: cannot travel to a worker.
pub struct Row {
    id: u64,
}

#[worker_task]
fn classify(c: &mut Classifier, row: Row) -> bool {
    c.hits += 1;
    row.id % 2 == 0
}

fn main() {}
