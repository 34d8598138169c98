use pool_runtime::worker_task;

/// Not `Serialize` nor `Deserialize`: cannot travel back from a worker.
pub struct Label {
    name: String,
}

#[worker_task]
fn label(id: u64) -> Label {
    Label {
        name: id.to_string(),
    }
}

fn main() {}
