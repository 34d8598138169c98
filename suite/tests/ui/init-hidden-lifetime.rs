// A state type whose lifetime is elided in the signature (`Parser`, not
// `Parser<'_>`) is not seen by the attribute; `build` rejects it.
use pool_runtime::{worker_init, Pool};

pub struct Parser<'a> {
    text: &'a str,
}

#[worker_init]
fn load(text: &String) -> Parser {
    Parser { text }
}

fn _never() {
    let _ = Pool::builder().build(load, String::new());
}

fn main() {}
