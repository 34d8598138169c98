use pool_runtime::{worker_init, Pool};

pub struct Config {
    start: u64,
}

pub struct Classifier {
    hits: u64,
}

#[worker_init]
fn load(config: &Config) -> Classifier {
    Classifier { hits: config.start }
}

fn _never() {
    let _ = Pool::builder().build(load, 5u64);
}

fn main() {}
