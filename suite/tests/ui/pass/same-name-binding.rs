// The attribute adds nothing to the value or type namespaces: a binding, a
// local or a type named like the function still compiles (actix-web #1761).
use pool_runtime::{worker_task, Pool};

pub struct Classifier {
    hits: u64,
}

#[worker_task]
fn classify(c: &mut Classifier, row: u64) -> bool {
    c.hits += 1;
    row % 2 == 0
}

fn shadow() -> u64 {
    let classify = 1;
    classify + 1
}

#[allow(non_camel_case_types)]
pub struct classify_output;

fn _never(pool: &Pool<Classifier>) {
    let _ = pool.map(classify, vec![1, 2]);
}

fn main() {
    #[worker_task]
    fn nested(x: u64) -> u64 {
        x
    }
    let nested = nested(1);
    let classify = nested + shadow();
    assert_eq!(classify, 3);
}
