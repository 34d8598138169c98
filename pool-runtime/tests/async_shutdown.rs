//! The pump thread ends with the pool: after `drop` or `join`, neither it
//! nor any worker or fork server is left, even when the pump was polling at
//! that moment. One test in this binary, so that no other pool's threads or
//! processes are counted.
#![cfg(feature = "async")]

mod async_common;

use async_common::*;
use futures_executor::block_on;
use futures_util::StreamExt;
use pool_runtime::Pool;

const PUMP: &str = "pool-async-pump";

fn pumps() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == PUMP)
        .count()
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// The pool's worker pids and its fork server's pid.
fn processes(pool: &Pool<Me>) -> Vec<u32> {
    let mut pids: Vec<u32> = workers(pool).iter().map(|w| w.0).collect();
    pids.push(parent_of(pids[0]));
    assert!(pids.iter().all(|&p| !gone(p)));
    pids
}

#[test]
fn the_pump_and_every_process_end_with_the_pool() {
    let _dog = Dog::arm("shutdown");
    assert_eq!(pumps(), 0);

    // Blocking calls alone start no pump.
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    assert_eq!(pool.map(square, 0..10u64).unwrap().len(), 10);
    assert_eq!(pumps(), 0, "no async waiter, no pump");

    // An async wait starts one; a second pool has its own.
    assert_eq!(block_on(pool.submit(sleep_ms, 20)).unwrap(), 20);
    assert_eq!(pumps(), 1);
    let other = Pool::builder().workers(1).build(me, ()).unwrap();
    assert_eq!(block_on(other.submit(sleep_ms, 20)).unwrap(), 20);
    assert_eq!(pumps(), 2);
    // Parked between waits: a later wait reuses it.
    assert_eq!(block_on(pool.submit(sleep_ms, 20)).unwrap(), 20);
    assert_eq!(pumps(), 2);

    let pids = processes(&pool);
    drop(pool);
    assert_eq!(pumps(), 1, "dropping the pool joined its pump");
    assert!(pids.iter().all(|&p| gone(p)), "{pids:?}");

    // `join` too, and while the pump is in the middle of polling for a
    // stream that was dropped with work in flight.
    let pids = processes(&other);
    {
        let mut s = other.imap(sleep_ms, vec![300u64; 4]).into_stream();
        assert!(poll_once(&mut s.next()).is_pending());
    }
    other.join().unwrap();
    assert_eq!(pumps(), 0, "join joined the pump");
    assert!(pids.iter().all(|&p| gone(p)), "{pids:?}");
}
