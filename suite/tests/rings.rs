//! Small frames take the shared-memory rings, large ones the socket
//! (`pool-runtime/src/driver/README.md`, Rings): whatever the mix, every
//! call gets its own answer, in order, and a worker killed while the
//! driver waits on its ring is noticed at once.

use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};

/// No state to speak of.
struct Empty;

#[worker_init]
fn nothing(_: &()) -> Empty {
    Empty
}

#[worker_task]
fn echo(_: &mut Empty, bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

#[worker_task]
fn grow(_: &mut Empty, (seed, len): (u8, usize)) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[worker_task]
fn die(_: &mut Empty, _: ()) {
    std::process::abort();
}

#[worker_task]
fn nap(_: &mut Empty, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn small_and_large_frames_alternate_and_each_call_gets_its_own() {
    let pool = Pool::builder().workers(1).build(nothing, ()).unwrap();
    // Sizes on both sides of the ring's capacity (32 KiB), in and out.
    for (i, len) in [0usize, 10, 40_000, 3, 100_000, 32 * 1024 - 64, 32 * 1024, 7]
        .iter()
        .cycle()
        .take(64)
        .enumerate()
    {
        let input: Vec<u8> = (0..*len).map(|b| (b + i) as u8).collect();
        assert_eq!(pool.apply(echo, input.clone()).unwrap(), input, "call {i}");
        let out = pool.apply(grow, (i as u8, *len)).unwrap();
        assert_eq!(out.len(), *len);
        assert!(out
            .iter()
            .enumerate()
            .all(|(j, b)| *b == (i as u8).wrapping_add(j as u8)));
    }
    pool.join().unwrap();
}

#[test]
fn calls_while_a_map_runs_keep_their_answers() {
    let pool = Pool::builder().workers(2).build(nothing, ()).unwrap();
    std::thread::scope(|s| {
        let mapped = s.spawn(|| {
            pool.map(grow, (0..500).map(|i| (i as u8, i % 300)))
                .unwrap()
        });
        for i in 0..300usize {
            assert_eq!(
                pool.apply(grow, (i as u8, 5)).unwrap(),
                grow(&mut Empty, (i as u8, 5))
            );
        }
        let mapped = mapped.join().unwrap();
        for (i, out) in mapped.iter().enumerate() {
            assert_eq!(*out, grow(&mut Empty, (i as u8, i % 300)), "item {i}");
        }
    });
    // Handles cancelled before they run (taken back), then calls again.
    for _ in 0..20 {
        let long = pool.submit(nap, 30);
        let waiting = pool.submit(nap, 1);
        let other = pool.submit(nap, 1);
        let _ = waiting.cancel();
        assert_eq!(pool.apply(nap, 0).unwrap(), 0);
        assert_eq!(long.wait().unwrap(), 30);
        let _ = other.wait();
    }
}

#[test]
fn a_worker_dying_while_its_answer_is_awaited_on_the_ring_is_noticed_at_once() {
    let pool = Pool::builder().workers(1).build(nothing, ()).unwrap();
    assert_eq!(pool.apply(echo, vec![1]).unwrap(), vec![1]);
    let t = Instant::now();
    let e = pool.apply(die, ()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::WorkerDied(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Its replacement has fresh rings.
    assert_eq!(pool.apply(echo, vec![2; 10]).unwrap(), vec![2; 10]);
}
