use pool_runtime::worker_task;

#[worker_task(name = "square_v2")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
