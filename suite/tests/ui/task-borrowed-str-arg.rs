use pool_runtime::worker_task;

pub struct Counter {
    words: u64,
}

#[worker_task]
fn count(c: &mut Counter, word: &str) -> u64 {
    c.words += 1;
    word.len() as u64
}

fn main() {}
