//! Inputs are pulled lazily: a huge input never sits in memory.

use std::sync::atomic::{AtomicU64, Ordering};

use pool_runtime::{worker_task, Pool};

#[worker_task]
fn double(x: u64) -> u64 {
    2 * x
}

#[test]
fn imap_pulls_a_bounded_number_of_inputs() {
    let pool: Pool<()> = Pool::builder().workers(2).build(|_: &()| (), ()).unwrap();
    let pulled = AtomicU64::new(0);
    let inputs = (0..50_000_000u64).inspect(|_| {
        pulled.fetch_add(1, Ordering::Relaxed);
    });
    let first: Vec<u64> = pool
        .imap(double, inputs)
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..10).map(|x| 2 * x).collect::<Vec<_>>());
    let n = pulled.load(Ordering::Relaxed);
    println!("pulled {n} inputs to hand out 10");
    assert!(n < 100_000, "pulled {n} inputs to hand out 10");
    // The pool is usable after the stream was dropped early.
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
}

#[test]
fn imap_unordered_also_pulls_lazily() {
    let pool: Pool<()> = Pool::builder().workers(2).build(|_: &()| (), ()).unwrap();
    let pulled = AtomicU64::new(0);
    let inputs = (0..u64::MAX).inspect(|_| {
        pulled.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(pool.imap_unordered(double, inputs).take(1000).count(), 1000);
    assert!(pulled.load(Ordering::Relaxed) < 1_000_000);
}
