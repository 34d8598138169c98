//! The `async` feature under a plain executor (`futures-executor`'s
//! `block_on`, no runtime, no timer): the pump thread is the only thing
//! that wakes the futures.
#![cfg(feature = "async")]

mod async_common;

use async_common::*;
use futures_executor::block_on;
use futures_util::stream::StreamExt;
use pool_runtime::Pool;

#[test]
fn submit_awaited_under_block_on() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    watchdog("submit", || {
        assert_eq!(block_on(pool.submit(square, 12)).unwrap(), 144);
        let sum = block_on(async {
            let (a, b) = (pool.submit(square, 3), pool.submit(square, 4));
            a.await.unwrap() + b.await.unwrap()
        });
        assert_eq!(sum, 25);
    });
}

#[test]
fn many_submits_joined_under_block_on() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    let got = watchdog("join_all", || {
        block_on(futures_util::future::join_all(
            (0..300u64).map(|x| pool.submit(square, x)),
        ))
    });
    let got: Vec<u64> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, (0..300u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn streams_under_block_on_ordered_and_unordered() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    watchdog("streams", || {
        let ordered: Vec<u64> = block_on(
            pool.imap(square, 0..3000u64)
                .into_stream()
                .map(Result::unwrap)
                .collect(),
        );
        assert_eq!(ordered, (0..3000u64).map(|x| x * x).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = block_on(
            pool.imap_unordered(square, 0..3000u64)
                .into_stream()
                .map(Result::unwrap)
                .collect(),
        );
        unordered.sort();
        assert_eq!(unordered, ordered);
    });
}

#[test]
fn a_panic_and_a_dead_worker_under_block_on() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    watchdog("failures", || {
        let got: Vec<_> = block_on(pool.imap(panic_on_three, 0..8u64).into_stream().collect());
        assert_eq!(got.len(), 8);
        assert!(is_panicked(got[3].as_ref().unwrap_err()));
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 7);

        let got: Vec<_> = block_on(pool.imap(abort_on_five, 0..20u64).into_stream().collect());
        assert_eq!(got.len(), 20);
        for (x, r) in got.iter().enumerate() {
            match r {
                Err(e) => assert!(x == 5 && is_abort(e), "input {x}: {e}"),
                Ok(v) => assert_eq!(*v, x as u64),
            }
        }
        assert!(got[5].is_err());
    });
}

/// Async and blocking callers at once, from several threads: whoever polls
/// drives for all of them.
#[test]
fn async_and_blocking_callers_share_the_pool() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    let want: Vec<u64> = (0..2000u64).map(|x| x * x).collect();
    watchdog("mixed", || {
        std::thread::scope(|s| {
            let mut threads = Vec::new();
            for t in 0..3 {
                let pool = &pool;
                threads.push(s.spawn(move || {
                    match t {
                        0 => pool.map(square, 0..2000u64).unwrap(),
                        1 => block_on(
                            pool.imap(square, 0..2000u64)
                                .into_stream()
                                .map(Result::unwrap)
                                .collect(),
                        ),
                        _ => block_on(futures_util::future::join_all(
                            (0..2000u64).map(|x| pool.submit(square, x)),
                        ))
                        .into_iter()
                        .map(Result::unwrap)
                        .collect(),
                    }
                }));
            }
            for t in threads {
                assert_eq!(t.join().unwrap(), want);
            }
        });
    });
}

/// The stream's ordering survives a dead worker whose inputs run again.
#[test]
fn an_ordered_stream_with_a_dead_worker_keeps_input_order() {
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(3)
        .build(me, ())
        .unwrap();
    let got: Vec<_> = watchdog("order", || {
        block_on(pool.imap(abort_on_five, 0..30u64).into_stream().collect())
    });
    let oks: Vec<u64> = got
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(oks, (0..30u64).filter(|&x| x != 5).collect::<Vec<_>>());
    assert!(is_abort(got[5].as_ref().unwrap_err()));
}

#[test]
fn join_with_after_async_use() {
    let pool = Pool::builder().workers(2).build(me, ()).unwrap();
    watchdog("join_with", || {
        let got: Vec<_> = block_on(pool.imap(abort_on_five, 0..10u64).into_stream().collect());
        assert_eq!(got.iter().filter(|r| r.is_err()).count(), 1);
        // The exit hook runs on both workers, one of them a replacement.
        let generations = pool.join_with(leave).unwrap();
        assert_eq!(generations.len(), 2);
        assert_eq!(generations.iter().sum::<u32>(), 1);
    });
}

/// Both can cross threads: a multi-threaded executor may move them.
#[test]
fn futures_and_streams_are_send() {
    fn send<T: Send>(_: &T) {}
    let pool = Pool::builder().workers(1).build(me, ()).unwrap();
    let f = pool.submit(square, 2);
    let s = pool.imap(square, vec![1u64, 2]).into_stream();
    send(&f);
    send(&s);
    watchdog("send", || {
        std::thread::scope(|scope| {
            let f = scope.spawn(move || block_on(f).unwrap());
            let s = scope.spawn(move || block_on(s.map(Result::unwrap).collect::<Vec<_>>()));
            assert_eq!(f.join().unwrap(), 4);
            assert_eq!(s.join().unwrap(), vec![1, 4]);
        });
    });
}
