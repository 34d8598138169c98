use pool_runtime::worker_init;

pub struct Classifier {
    hits: u64,
}

#[worker_init]
fn load() -> Classifier {
    Classifier { hits: 0 }
}

fn main() {}
