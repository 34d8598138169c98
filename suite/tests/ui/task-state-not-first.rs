use pool_runtime::worker_task;

pub struct Classifier {
    hits: u64,
}

#[worker_task]
fn classify(row: u64, c: &mut Classifier) -> bool {
    c.hits += 1;
    row % 2 == 0
}

fn main() {}
