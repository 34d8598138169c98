use pool_runtime::worker_task;

pub struct Classifier {
    hits: u64,
}

pub struct Cache {
    rows: Vec<u64>,
}

#[worker_task]
fn classify(c: &mut Classifier, cache: &mut Cache, row: u64) -> bool {
    c.hits += 1;
    cache.rows.push(row);
    row % 2 == 0
}

fn main() {}
