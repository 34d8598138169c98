// The state lives as long as its worker: it cannot borrow from the init's
// arguments, even though they stay in the worker's memory.
use pool_runtime::worker_init;

pub struct Parser<'a> {
    text: &'a str,
}

#[worker_init]
fn load(text: &String) -> Parser<'_> {
    Parser { text }
}

fn main() {}
