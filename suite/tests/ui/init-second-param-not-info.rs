use pool_runtime::worker_init;

pub struct Config {
    start: u64,
}

pub struct Classifier {
    hits: u64,
}

#[worker_init]
fn load(config: &Config, index: usize) -> Classifier {
    Classifier {
        hits: config.start + index as u64,
    }
}

fn main() {}
