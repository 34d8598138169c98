use pool_runtime::worker_init;

pub struct Config {
    size: usize,
}

#[worker_init]
fn load(config: &Config) {
    println!("{}", config.size);
}

fn main() {}
