use pool_runtime::worker_task;

pub struct Dictionary {
    words: Vec<String>,
}

#[worker_task]
fn lookup(d: &Dictionary, index: usize) -> &str {
    &d.words[index]
}

fn main() {}
