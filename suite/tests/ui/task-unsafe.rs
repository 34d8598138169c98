use pool_runtime::worker_task;

#[worker_task]
unsafe fn first(bytes: Vec<u8>) -> u8 {
    *bytes.as_ptr()
}

fn main() {}
