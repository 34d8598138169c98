//! Dropping a future or a stream early cancels what it had queued, and the
//! pool stays whole: the same workers serve the next call, with the right
//! results. One worker, one input a batch, and a gate the inputs wait at,
//! so which inputs ran is exact, not a matter of timing.
#![cfg(feature = "async")]

mod async_common;

use std::task::Poll;

use async_common::*;
use futures_executor::block_on;
use futures_util::stream::StreamExt;
use pool_runtime::Pool;

fn one_worker() -> Pool<Me> {
    Pool::builder()
        .workers(1)
        .chunk_size(1)
        .build(me, ())
        .unwrap()
}

#[test]
fn a_stream_dropped_midway_runs_none_of_its_queued_inputs() {
    let pool = one_worker();
    let before = workers(&pool);
    let gate = Gate::new("stream");
    watchdog("stream", || {
        let mut s = pool
            .imap(gated, (0..100u64).map(|x| gate.input(x)))
            .into_stream();
        // Input 0 returns at once; by then the worker holds inputs 1 (waiting
        // at the gate) and 2, and the stream has queued the rest of its window.
        assert_eq!(block_on(s.next()).unwrap().unwrap(), 0);
        assert!(poll_once(&mut s.next()).is_pending(), "input 1 waits");
        drop(s);
        gate.release();
        assert_usable(&pool, &before);
    });
    // Only what the worker had started ran: input 2, sent to it but not
    // started, was taken back with the queued inputs.
    assert_eq!(gate.started(), vec![0, 1]);
}

#[test]
fn an_unordered_stream_dropped_midway_leaves_the_pool_whole() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    let before = workers(&pool);
    watchdog("unordered", || {
        let mut s = pool.imap_unordered(sleep_ms, vec![1u64; 500]).into_stream();
        for _ in 0..10 {
            assert_eq!(block_on(s.next()).unwrap().unwrap(), 1);
        }
        drop(s);
        assert_usable(&pool, &before);
    });
}

#[test]
fn a_pending_future_dropped_is_cancelled() {
    let pool = one_worker();
    let before = workers(&pool);
    let gate = Gate::new("future");
    watchdog("future", || {
        // The worker takes two batches: 1 (it runs, and waits at the gate)
        // and 2 (sent, not started). Input 3 waits in the queue.
        let mut one = pool.submit(gated, gate.input(1));
        let mut two = pool.submit(gated, gate.input(2));
        let mut three = pool.submit(gated, gate.input(3));
        for f in [&mut one, &mut two, &mut three] {
            assert!(poll_once(f).is_pending());
        }
        // Polled, so each registered a waker and the pump runs; dropped,
        // `three` is cancelled in the queue, and `two` taken back unstarted.
        drop(three);
        drop(two);
        gate.release();
        assert_eq!(block_on(one).unwrap(), 1);
        assert_usable(&pool, &before);
    });
    assert_eq!(gate.started(), vec![1], "inputs 2 and 3 never ran");
}

#[test]
fn a_future_polled_after_its_outcome_is_ready_takes_it_without_waiting() {
    let pool = one_worker();
    let gate = Gate::new("ready");
    watchdog("ready", || {
        let mut f = pool.submit(gated, gate.input(0));
        // Whoever drives the pool (here a blocking call) routes its outcome.
        assert_eq!(pool.apply(square, 2).unwrap(), 4);
        assert!(matches!(poll_once(&mut f), Poll::Ready(Ok(0))));
    });
}
