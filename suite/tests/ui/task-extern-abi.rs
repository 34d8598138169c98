use pool_runtime::worker_task;

#[worker_task]
extern "C" fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
