use pool_runtime::worker_init;

pub struct Config {
    loads: u64,
}

pub struct Classifier {
    hits: u64,
}

#[worker_init]
fn load(config: &mut Config) -> Classifier {
    config.loads += 1;
    Classifier { hits: 0 }
}

fn main() {}
