// A borrowed argument reads the driver's memory: fine for forked workers,
// refused for workers started fresh.
use pool_runtime::{worker_init, Pool};

#[worker_init]
fn count(words: &&[String]) -> usize {
    words.len()
}

fn main() {
    let words = vec!["a".to_string()];
    let _ = Pool::builder().build(count, &words[..]);
    let _ = Pool::builder().workers(2).spawn().build(count, &words[..]);
}
