use pool_runtime::worker_task;

#[worker_task]
struct Square {
    x: u64,
}

fn main() {}
