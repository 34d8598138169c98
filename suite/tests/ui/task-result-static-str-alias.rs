// A borrowed result hidden behind an alias passes the signature rules, and
// is then a lifetime error (`&'static str` implements `Deserialize`, only
// not for every lifetime): once, from the assertion, since the worker's glue
// only serializes a result.
use pool_runtime::worker_task;

type Name = &'static str;

#[worker_task]
fn name(id: u64) -> Name {
    if id == 0 {
        "zero"
    } else {
        "other"
    }
}

fn main() {}
