//! The `async` feature under tokio: futures and streams of a pool, with only
//! async callers waiting (no thread blocks on the pool, so the pump thread
//! does all the driving: completions, worker deaths, timeouts).
#![cfg(feature = "async")]

mod async_common;

use std::collections::BTreeSet;
use std::time::Duration;

use async_common::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use pool_runtime::{ErrorKind, Pool};

#[tokio::test]
async fn submit_is_awaited_on_a_current_thread_runtime() {
    let _dog = Dog::arm("submit_is_awaited_on_a_current_thread_runtime");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    // Tasks that take a while, so that the first poll surely finds nothing.
    assert_eq!(pool.submit(sleep_ms, 20).await.unwrap(), 20);
    // And again: the pump parked in between, and wakes.
    assert_eq!(pool.submit(sleep_ms, 21).await.unwrap(), 21);
    assert_eq!(pool.submit(square, 8).await.unwrap(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_submits_joined_concurrently() {
    let _dog = Dog::arm("many_submits_joined_concurrently");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    let handles: Vec<_> = (0..200u64).map(|x| pool.submit(square, x)).collect();
    let got = futures_util::future::join_all(handles).await;
    let got: Vec<u64> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_stream_gives_every_outcome_in_input_order() {
    let _dog = Dog::arm("ordered_stream_gives_every_outcome_in_input_order");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    // Uneven task lengths, so completion order differs from input order.
    let inputs: Vec<u64> = (0..300u64).map(|x| (x * 7) % 5).collect();
    let got: Vec<u64> = pool
        .imap(sleep_ms, inputs.clone())
        .into_stream()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(got, inputs);
    let got: Vec<u64> = pool
        .imap(square, 0..5000u64)
        .into_stream()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(got, (0..5000u64).map(|x| x * x).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_stream_gives_every_outcome_exactly_once() {
    let _dog = Dog::arm("unordered_stream_gives_every_outcome_exactly_once");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    // Uneven task lengths, so completion order differs from input order.
    let inputs: Vec<u64> = (0..60u64).map(|x| (x * 7) % 11).collect();
    let got: Vec<u64> = pool
        .imap_unordered(sleep_ms, inputs.clone())
        .into_stream()
        .map(Result::unwrap)
        .collect()
        .await;
    let (mut got_sorted, mut want) = (got, inputs);
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
}

#[tokio::test]
async fn streams_and_futures_interleave_on_one_thread() {
    let _dog = Dog::arm("streams_and_futures_interleave_on_one_thread");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    // Two streams and a handful of futures, all pending at once, polled by
    // one thread: every waker must be woken for its own job.
    let a = pool.imap(square, 0..300u64).into_stream();
    let b = pool.imap_unordered(square, 300..600u64).into_stream();
    let futs: FuturesUnordered<_> = (600..620u64).map(|x| pool.submit(square, x)).collect();
    let (a, b, c): (Vec<_>, Vec<_>, Vec<_>) = async {
        tokio::join!(
            a.map(Result::unwrap).collect(),
            b.map(Result::unwrap).collect(),
            futs.map(Result::unwrap).collect()
        )
    }
    .await;
    assert_eq!(a, (0..300u64).map(|x| x * x).collect::<Vec<_>>());
    let all: BTreeSet<u64> = a.iter().chain(&b).chain(&c).copied().collect();
    assert_eq!(all.len(), 620);
    assert_eq!(all, (0..620u64).map(|x| x * x).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_an_error_item_and_the_rest_succeed() {
    let _dog = Dog::arm("a_panic_is_an_error_item_and_the_rest_succeed");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    let got: Vec<_> = pool
        .imap(panic_on_three, 0..10u64)
        .into_stream()
        .collect()
        .await;
    assert_eq!(got.len(), 10);
    for (x, r) in got.iter().enumerate() {
        match r {
            Err(e) => assert!(x == 3 && is_panicked(e), "input {x}: {e}"),
            Ok(v) => assert_eq!(*v, x as u64),
        }
    }
    assert!(got[3].is_err());
    let e = pool.submit(panic_on_three, 3).await.unwrap_err();
    assert!(is_panicked(&e), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_yields_its_error_item_with_only_async_waiters() {
    let _dog = Dog::arm("a_killed_worker_yields_its_error_item_with_only_async_waiters");
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    let got: Vec<_> = pool
        .imap_unordered(abort_on_five, 0..40u64)
        .into_stream()
        .collect()
        .await;
    assert_eq!(got.len(), 40, "one outcome per input");
    let errors: Vec<_> = got.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(is_abort(errors[0]), "{}", errors[0]);
    let mut ok: Vec<u64> = got.into_iter().filter_map(Result::ok).collect();
    ok.sort();
    assert_eq!(ok, (0..40u64).filter(|&x| x != 5).collect::<Vec<_>>());

    // A lone awaited call that kills its worker gets the error too.
    let e = pool.submit(abort_on_five, 5).await.unwrap_err();
    assert!(is_abort(&e), "{e}");
    // Replacements took both places: the pool serves on.
    let gens: u32 = workers(&pool).iter().map(|w| w.1).sum();
    assert_eq!(gens, 2, "two respawns in all");
    assert_eq!(pool.submit(square, 9).await.unwrap(), 81);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_timeout_fires_with_only_async_waiters() {
    let _dog = Dog::arm("a_task_timeout_fires_with_only_async_waiters");
    let pool = Pool::builder()
        .workers(2)
        .task_timeout(Duration::from_millis(300))
        .build(me, ())
        .unwrap();
    let (slow, quick) =
        async { tokio::join!(pool.submit(sleep_ms, 600_000), pool.submit(sleep_ms, 1)) }.await;
    let e = slow.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::TimedOut(_)), "{e}");
    assert_eq!(quick.unwrap(), 1);
    assert_eq!(pool.submit(square, 3).await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_by_a_tokio_timeout_leaves_the_pool_whole() {
    let _dog = Dog::arm("a_stream_dropped_by_a_tokio_timeout_leaves_the_pool_whole");
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(1)
        .build(me, ())
        .unwrap();
    let before = workers(&pool);
    let gate = Gate::new("tokio-timeout");
    let mut s = pool
        .imap(gated, (0..50u64).map(|x| gate.input(x)))
        .into_stream();
    assert_eq!(s.next().await.unwrap().unwrap(), 0);
    // Input 1 waits for the gate: the next item is pending, and the timeout
    // drops that poll, then we drop the stream itself.
    let waited = tokio::time::timeout(Duration::from_millis(50), s.next()).await;
    assert!(
        waited.is_err(),
        "input 1 cannot finish before the gate opens"
    );
    drop(s);
    gate.release();
    assert_usable(&pool, &before);
    assert!(gate.started().len() < 50, "{:?}", gate.started());
}
