use pool_runtime::worker_exit;

pub struct Classifier {
    hits: u64,
}

#[worker_exit]
fn report(c: &Classifier) -> u64 {
    c.hits
}

fn main() {}
