use pool_runtime::worker_task;

#[worker_task]
async fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
