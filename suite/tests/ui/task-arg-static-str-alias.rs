// A borrowed argument hidden behind an alias passes the signature rules.
// `&'static str` does implement `Deserialize`, only not for every lifetime,
// so rustc finds no missing trait but a lifetime error, and reports it once
// in each body that decodes the argument (the entry, the batch glue, the
// pipeline glue, the `Debug` of slow inputs): there is no trait error that
// could be reported once instead. Pinned so that the count shows if it moves.
use pool_runtime::worker_task;

pub struct Counter {
    words: u64,
}

type Word = &'static str;

#[worker_task]
fn count(c: &mut Counter, word: Word) -> u64 {
    c.words += 1;
    word.len() as u64
}

fn main() {}
