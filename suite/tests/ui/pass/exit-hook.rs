use pool_runtime::{worker_exit, Pool};

pub struct Classifier {
    hits: u64,
}

#[worker_exit]
fn report(c: Classifier) -> u64 {
    c.hits
}

#[worker_exit]
fn close(_: Classifier) {}

fn _never(a: Pool<Classifier>, b: Pool<Classifier>) {
    let _: Result<Vec<u64>, _> = a.join_with(report);
    let _: Result<Vec<()>, _> = b.join_with(close);
}

fn main() {
    assert_eq!(report(Classifier { hits: 3 }), 3);
    close(Classifier { hits: 0 });
}
