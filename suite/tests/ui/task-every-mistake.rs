// Every mistake in one signature is reported at once, each under its tokens.
use pool_runtime::worker_task;

pub struct Classifier {
    hits: u64,
}

#[worker_task]
async fn classify<T>(c: &mut Classifier, name: &str, other: &mut Classifier) -> impl Sized {
    c.hits += other.hits;
    name.len()
}

fn main() {}
