//! A failed `build` leaves no process behind. Its own test binary, so that no
//! other test's pool is among this process's children while it counts them.

mod common;

use pool_runtime::{worker_init, Pool};

struct Never;

#[worker_init]
fn explode(_: &()) -> Never {
    panic!("init exploded")
}

#[worker_init]
fn refuse(_: &()) -> Result<Never, String> {
    Err("no".into())
}

#[test]
fn a_failed_build_leaves_no_process() {
    // The fork server is reaped inside `build`: our own children must not grow.
    let before = children_count();
    for _ in 0..5 {
        assert!(Pool::builder().workers(2).build(explode, ()).is_err());
        assert!(Pool::builder()
            .workers(2)
            .build(refuse, ())
            .map(|_: Pool<Never>| ())
            .is_err());
    }
    assert_eq!(children_count(), 0);
    assert!(children_count() <= before, "children grew from {before}");
}

fn children_count() -> usize {
    common::children_of(std::process::id()).len()
}
