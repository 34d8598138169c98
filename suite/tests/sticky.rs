//! Sticky routing (issue 13): `submit_to` runs on the worker slot named,
//! `map_by_key` runs every input of one key on one worker, whose state then
//! holds a cache per key; a key keeps its slot across the slot's respawn.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pool_runtime::{worker_init, worker_task, Pool};

/// How many times this worker has seen each key.
type Seen = HashMap<u32, u32>;

#[worker_init]
fn seen(_: &()) -> Seen {
    Seen::new()
}

/// The worker's pid and how many times it has seen `key`, this one included.
#[worker_task]
fn visit(seen: &mut Seen, key: u32) -> (u32, u32) {
    let n = seen.entry(key).or_default();
    *n += 1;
    (std::process::id(), *n)
}

/// [`visit`], slowly.
#[worker_task]
fn slow_visit(seen: &mut Seen, key: u32) -> (u32, u32) {
    std::thread::sleep(Duration::from_millis(15));
    visit(seen, key)
}

#[worker_task]
fn pid(_: &Seen) -> u32 {
    std::process::id()
}

fn pool(workers: usize) -> Pool<Seen> {
    Pool::builder()
        .workers(workers)
        .retries(2)
        .build(seen, ())
        .unwrap()
}

/// Keys 0..10, twenty of each, interleaved.
fn keys() -> Vec<u32> {
    (0..200).map(|i| (i * 7) % 10).collect()
}

#[test]
fn map_by_key_runs_each_key_on_one_worker_in_input_order() {
    let pool = pool(3);
    let keys = keys();
    let out = pool.map_by_key(visit, keys.clone(), |&k| k).unwrap();
    let pids = pool.broadcast(pid, ()).unwrap();
    let mut per_key: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
    for (&k, &o) in keys.iter().zip(&out) {
        per_key.entry(k).or_default().push(o);
    }
    let mut used = std::collections::HashSet::new();
    for (k, outs) in per_key {
        let slot = pool.worker_for(&k);
        // One worker for the key, the one its slot holds; its count is the
        // key's own: 1, 2, 3, … in input order.
        assert!(
            outs.iter().all(|&(p, _)| p == pids[slot]),
            "key {k}: {outs:?}"
        );
        let counts: Vec<u32> = outs.iter().map(|&(_, n)| n).collect();
        assert_eq!(counts, (1..=20).collect::<Vec<_>>(), "key {k}");
        used.insert(slot);
    }
    assert!(
        used.len() > 1,
        "ten keys all hashed to one of three workers"
    );
    // A second call finds the same caches.
    let again = pool.map_by_key(visit, [3, 3], |&k| k).unwrap();
    assert_eq!(
        again.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![21, 22]
    );
}

#[test]
fn submit_to_runs_on_the_worker_named() {
    let pool = pool(3);
    let pids = pool.broadcast(pid, ()).unwrap();
    for round in 0..3 {
        for (w, &p) in pids.iter().enumerate() {
            let (got, n) = pool.submit_to(w, visit, 99).wait().unwrap();
            assert_eq!(got, p, "worker {w}");
            assert_eq!(n, round + 1, "worker {w}'s own count");
        }
    }
    let key_slot = pool.worker_for(&"k");
    assert_eq!(
        pool.submit_to(key_slot, pid, ()).wait().unwrap(),
        pids[key_slot]
    );
}

#[test]
#[should_panic(expected = "submit_to: worker 2 of a pool of 2")]
fn submit_to_a_worker_the_pool_has_not_panics() {
    let pool = pool(2);
    drop(pool.submit_to(2, pid, ()));
}

#[test]
fn a_key_keeps_its_slot_when_its_worker_is_killed_mid_map() {
    let pool = pool(2);
    let key = 5u32;
    let slot = pool.worker_for(&key);
    let before = pool.broadcast(pid, ()).unwrap();
    let other = before[1 - slot];
    // Kill the key's worker while it works through the key's inputs.
    let victim = before[slot];
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        });
        pool.map_by_key(slow_visit, vec![key; 60], |&k| k).unwrap()
    });
    let after = pool.submit_to(slot, pid, ()).wait().unwrap();
    assert_ne!(after, victim, "the slot has a new worker");
    assert!(
        out.iter().all(|&(p, _)| p != other),
        "a key input ran on the other worker"
    );
    assert!(out.iter().any(|&(p, _)| p == victim), "{out:?}");
    assert!(out.iter().any(|&(p, _)| p == after), "{out:?}");
    assert!(
        out.iter().all(|&(p, _)| p == victim || p == after),
        "{out:?}"
    );
    // The new worker's cache starts over, and later calls find it.
    let (p, n) = pool.map_by_key(visit, [key], |&k| k).unwrap()[0];
    assert_eq!(p, after);
    let fresh = out.iter().filter(|&&(p, _)| p == after).count() as u32;
    assert_eq!(n, fresh + 1);
}

#[worker_task]
fn nap(_: &mut Seen, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_call_for_one_worker_waiting_unstarted_is_cancelled_and_never_runs() {
    let pool = pool(2);
    let long = pool.submit_to(1, nap, 300);
    // Behind the long call on worker 1, and the next one in its slot's queue.
    let held = pool.submit_to(1, visit, 7);
    let queued = pool.submit_to(1, visit, 7);
    assert!(held.cancel().is_ok(), "unstarted in worker 1: cancelled");
    assert!(queued.cancel().is_ok(), "queued for worker 1: cancelled");
    assert_eq!(long.wait().unwrap(), 300);
    // Neither ran: worker 1 sees key 7 for the first time now.
    assert_eq!(pool.submit_to(1, visit, 7).wait().unwrap().1, 1);
}
