use pool_runtime::{worker_task, Pool};
use serde::{Deserialize, Serialize};

pub struct Classifier {
    hits: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Row {
    id: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Label {
    Even,
    Odd,
}

/// Docs and other attributes stay on the function.
#[worker_task]
#[inline]
pub fn classify(c: &mut Classifier, row: Row) -> Label {
    c.hits += 1;
    if row.id % 2 == 0 {
        Label::Even
    } else {
        Label::Odd
    }
}

fn _never(pool: &Pool<Classifier>) {
    let _: Result<Vec<Label>, _> = pool.map(classify, vec![Row { id: 1 }]);
    for r in pool.imap_unordered(classify, vec![Row { id: 2 }]) {
        let _: Label = r.unwrap();
    }
}

fn main() {
    let mut c = Classifier { hits: 0 };
    assert_eq!(classify(&mut c, Row { id: 4 }), Label::Even);
    assert_eq!(c.hits, 1);
}
