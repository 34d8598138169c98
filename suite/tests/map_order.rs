//! The calls of the pool and what each returns: order, shapes of tasks,
//! tuples, `Result` outputs, broadcast, submit.

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

struct Scale {
    factor: u64,
    worker: usize,
}

#[worker_init]
fn scale(factor: &u64, me: WorkerInfo) -> Scale {
    Scale {
        factor: *factor,
        worker: me.index(),
    }
}

#[worker_task]
fn times(s: &mut Scale, x: u64) -> u64 {
    s.factor * x
}

#[worker_task]
fn times_shared(s: &Scale, x: u64) -> u64 {
    s.factor * x
}

#[worker_task]
fn affine(s: &mut Scale, a: u64, b: u64) -> u64 {
    s.factor * a + b
}

#[worker_task]
fn whoami(s: &mut Scale) -> usize {
    s.worker
}

#[worker_task]
fn square(x: u64) -> u64 {
    x * x
}

#[worker_task]
fn checked_div(x: u64, by: u64) -> Result<u64, String> {
    x.checked_div(by).ok_or_else(|| format!("{x} / 0"))
}

#[worker_task]
fn slow_when_even(x: u64) -> u64 {
    if x.is_multiple_of(2) {
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    x
}

fn pool(workers: usize) -> Pool<Scale> {
    Pool::builder().workers(workers).build(scale, 3).unwrap()
}

#[test]
fn map_keeps_input_order() {
    let pool = pool(2);
    let out = pool.map(times, 0..10_000).unwrap();
    assert_eq!(out, (0..10_000).map(|x| 3 * x).collect::<Vec<_>>());
    assert_eq!(pool.map(times_shared, vec![1, 2]).unwrap(), vec![3, 6]);
    assert!(pool.map(times, Vec::new()).unwrap().is_empty());
}

#[test]
fn imap_is_ordered_and_imap_unordered_is_complete() {
    let pool = pool(2);
    let ordered: Vec<u64> = pool
        .imap(slow_when_even, 0..20)
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, (0..20).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered(slow_when_even, 0..20)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, (0..20).collect::<Vec<_>>());
}

#[test]
fn several_arguments_travel_as_a_tuple() {
    let pool = pool(2);
    assert_eq!(pool.map(affine, vec![(1, 1), (2, 5)]).unwrap(), vec![4, 11]);
    assert_eq!(pool.apply(affine, (10, 1)).unwrap(), 31);
}

#[test]
fn stateless_tasks_run_on_any_pool() {
    let pool = pool(1);
    assert_eq!(pool.map(square, 1..4).unwrap(), vec![1, 4, 9]);
    let other: Pool<String> = Pool::builder()
        .workers(1)
        .build(|s: &String| s.clone(), "x".to_string())
        .unwrap();
    assert_eq!(other.apply(square, 12).unwrap(), 144);
}

#[test]
fn a_task_returning_result_gives_that_result_back() {
    let pool = pool(1);
    let out = pool.map(checked_div, vec![(6, 3), (1, 0)]).unwrap();
    assert_eq!(out, vec![Ok(2), Err("1 / 0".to_string())]);
}

#[test]
fn submit_returns_now_and_waits_later() {
    let pool = pool(2);
    let a = pool.submit(times, 5);
    let b = pool.submit(square, 5);
    assert_eq!(b.wait().unwrap(), 25);
    assert_eq!(a.wait().unwrap(), 15);
    // A handle dropped unwaited loses its output, not the pool.
    drop(pool.submit(times, 1));
    assert_eq!(pool.apply(times, 2).unwrap(), 6);
}

#[test]
fn broadcast_runs_once_on_every_worker() {
    let pool = pool(3);
    assert_eq!(pool.broadcast(whoami, ()).unwrap(), vec![0, 1, 2]);
}

#[test]
fn chunk_size_override_is_honoured() {
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(7)
        .build(scale, 2)
        .unwrap();
    assert_eq!(
        pool.map(times, 0..100).unwrap(),
        (0..100).map(|x| 2 * x).collect::<Vec<_>>()
    );
}

#[test]
fn a_panicking_task_fails_its_input_only() {
    #[worker_task]
    fn fragile(x: u64) -> u64 {
        assert!(x != 7, "seven is not allowed");
        x
    }
    let pool = pool(2);
    let out: Vec<_> = pool.imap(fragile, 0..10).collect();
    for (x, r) in out.iter().enumerate() {
        if x == 7 {
            let e = r.as_ref().unwrap_err();
            match e.kind() {
                ErrorKind::Panicked(m) => assert!(
                    m.contains("seven is not allowed") && m.contains("map_order.rs"),
                    "{m}"
                ),
                k => panic!("{k:?}"),
            }
        } else {
            assert_eq!(*r.as_ref().unwrap(), x as u64);
        }
    }
    // map stops at the first failure and says which.
    let e = pool.map(fragile, 0..10).unwrap_err();
    assert!(e.to_string().contains("seven"), "{e}");
}

#[test]
fn an_unannotated_function_is_refused_by_name() {
    fn plain(x: u64) -> u64 {
        x
    }
    let pool = pool(1);
    let e = pool.map(plain, 0..3).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NotRegistered(_)), "{e}");
    assert!(e.to_string().contains("#[worker_task]"), "{e}");
}

#[test]
fn the_task_is_still_a_plain_function() {
    let mut s = Scale {
        factor: 4,
        worker: 0,
    };
    assert_eq!(times(&mut s, 2), 8);
    assert_eq!(affine(&mut s, 1, 1), 5);
    #[allow(unused_variables)]
    let times = 1;
}
