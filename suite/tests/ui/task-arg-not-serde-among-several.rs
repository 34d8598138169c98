// Among several arguments, the one that is not serde is the one reported.
use pool_runtime::worker_task;

pub struct Classifier {
    hits: u64,
}

/// Not `Serialize` nor `Deserialize`: cannot travel to a worker.
pub struct Row {
    id: u64,
}

#[worker_task]
fn classify(c: &mut Classifier, id: u64, row: Row, tag: String) -> bool {
    c.hits += 1;
    row.id == id && !tag.is_empty()
}

fn main() {}
