use pool_runtime::worker_task;

#[worker_task]
fn double<T: Clone>(x: T) -> (T, T) {
    (x.clone(), x)
}

fn main() {}
