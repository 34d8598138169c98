//! A waker that panics when the pool clones it (under the pool's lock): the
//! pool's state may be half-changed, so the pool breaks, says why to every
//! later call, and still shuts down with no process left; nothing hangs.
#![cfg(feature = "async")]

mod async_common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, RawWaker, RawWakerVTable, Waker};

use async_common::*;
use pool_runtime::{ErrorKind, Pool};

fn clone_panics(_: *const ()) -> RawWaker {
    panic!("this waker refuses to be cloned")
}
fn nothing(_: *const ()) {}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_panics, nothing, nothing, nothing);

#[test]
fn a_panic_under_the_pools_lock_breaks_the_pool_and_says_so() {
    let pool: Pool<Me> = Pool::builder().workers(1).build(me, ()).unwrap();
    let pids: Vec<u32> = workers(&pool).iter().map(|&(pid, _)| pid).collect();
    watchdog("poisoned", || {
        // SAFETY: the vtable's functions ignore the data pointer, which is null.
        let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
        let mut cx = Context::from_waker(&waker);
        let gate = Gate::new("poisoned");
        let mut call = pin!(pool.submit(gated, gate.input(1)));
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.as_mut().poll(&mut cx)));
        assert!(polled.is_err(), "the waker's clone panicked in the poll");
        gate.release();
        let e = pool.apply(square, 3).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::PoolBroken(m) if m.contains("panicked while it held")),
            "{e}"
        );
    });
    drop(pool);
    assert!(
        pids.iter().all(|&p| gone(p)),
        "no process outlives a broken pool: {pids:?}"
    );
}
