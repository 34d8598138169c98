// A state type with a lifetime may write `'_`: the pool's state is
// `'static`, and the task works for it.
use pool_runtime::{worker_task, Pool};

pub struct Parser<'a> {
    text: &'a str,
}

#[worker_task]
fn find(p: &mut Parser<'_>, needle: String) -> bool {
    p.text.contains(&needle)
}

fn _never(pool: &Pool<Parser<'static>>) {
    let _: Result<Vec<bool>, _> = pool.map(find, vec!["a".to_string()]);
}

fn main() {
    assert!(find(&mut Parser { text: "abc" }, "b".into()));
}
