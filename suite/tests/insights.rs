//! `pool.insights()`: per-worker figures that add up, real pids, restarts
//! after a death, and the slowest items with their input (`Debug` text, or
//! the index when the input type has no `Debug`).

use std::collections::HashSet;
use std::time::Duration;

use pool_runtime::{worker_init, worker_task, Pool, SlowInput};
use serde::{Deserialize, Serialize};

#[worker_init]
fn start(_: &()) -> u64 {
    0
}

#[worker_task]
fn pid(_: &mut u64, _x: u32) -> u32 {
    std::process::id()
}

/// 50 ms on input 7, 1 ms on any other: each item takes over a microsecond,
/// so each is timed on its own.
fn naptime(x: u32) {
    std::thread::sleep(Duration::from_millis(if x == 7 { 50 } else { 1 }));
}

#[worker_task]
fn nap(_: &mut u64, x: u32) -> u32 {
    naptime(x);
    x
}

/// An input type without `Debug`.
#[derive(Serialize, Deserialize)]
struct Opaque(u32);

#[worker_task]
fn nap_opaque(_: &mut u64, x: Opaque) -> u32 {
    naptime(x.0);
    x.0
}

#[worker_task]
fn abort_on_three(_: &mut u64, x: u32) -> u32 {
    if x == 3 {
        std::process::abort();
    }
    x
}

#[worker_task]
fn square(x: u64) -> u64 {
    x * x
}

/// Cheap, except input 5000: 50 ms.
#[worker_task]
fn square_but_one(x: u64) -> u64 {
    if x == 5000 {
        std::thread::sleep(Duration::from_millis(50));
    }
    x * x
}

fn pool() -> Pool<u64> {
    Pool::builder().workers(2).build(start, ()).unwrap()
}

#[test]
fn figures_add_up_and_pids_are_the_workers() {
    let pool = pool();
    let fresh = pool.insights();
    assert_eq!(fresh.workers.len(), 2);
    assert_eq!(fresh.tasks(), 0);
    assert!(fresh.workers.iter().all(|w| w.init.is_some()), "{fresh:?}");

    let seen: HashSet<u32> = pool.map(pid, 0..200).unwrap().into_iter().collect();
    pool.map(nap, 0..20).unwrap();
    let n = 100_000;
    assert_eq!(pool.map(square, 0..n).unwrap().len(), n as usize);

    let ins = pool.insights();
    assert_eq!(ins.tasks(), 200 + 20 + n);
    assert_eq!(ins.restarts(), 0);
    let pids: HashSet<u32> = ins.workers.iter().map(|w| w.pid.unwrap()).collect();
    assert_eq!(pids.len(), 2);
    assert!(
        seen.is_subset(&pids),
        "tasks ran in {seen:?}, insights say {pids:?}"
    );
    for p in &pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
        assert_ne!(*p, std::process::id());
    }
    assert!(ins.busy() > Duration::ZERO);
    for w in &ins.workers {
        assert_eq!(w.generation, 0);
        assert!(w.bytes_in > 0 && w.bytes_out > 0, "{w:?}");
    }
    // The nap map alone kept the workers busy 20 ms or more in all.
    assert!(ins.busy() >= Duration::from_millis(20 + 49), "{ins:?}");
}

#[test]
fn the_slowest_item_shows_its_input() {
    let pool = pool();
    pool.map(nap, 0..20).unwrap();
    let ins = pool.insights();
    // In the pool's five slowest whatever the load does to the 1 ms naps.
    let top = ins
        .slowest
        .iter()
        .find(|s| s.input == SlowInput::Debug("7".into()))
        .unwrap_or_else(|| panic!("{ins}"));
    assert!(top.task.ends_with("::nap"), "{top:?}");
    assert!(top.time >= Duration::from_millis(50), "{top:?}");
    let w = &ins.workers[top.slot];
    assert_eq!(Some(top.pid), w.pid);
    assert!(w.slowest.iter().any(|s| s.input == top.input), "{w:?}");
    assert!(ins.slowest.len() <= 5);
    assert!(ins.slowest.windows(2).all(|p| p[0].time >= p[1].time));

    let table = ins.to_string();
    eprintln!("{table}");
    assert!(table.contains("restarts"), "{table}");
    for w in &ins.workers {
        assert!(table.contains(&w.pid.unwrap().to_string()), "{table}");
    }
    assert!(table.contains("::nap(7)"), "{table}");
    // The header, one row per worker, the totals, "slowest:" and its entries.
    assert_eq!(
        table.lines().count(),
        1 + 2 + 1 + 1 + ins.slowest.len(),
        "{table}"
    );
    let all = table.lines().nth(3).unwrap();
    assert!(all.trim_start().starts_with("all"), "{table}");
    assert_eq!(all.split_whitespace().nth(2), Some("20"), "{table}");
}

#[test]
fn an_input_without_debug_shows_its_index() {
    let pool = pool();
    pool.map(nap_opaque, (0..20).map(Opaque)).unwrap();
    let ins = pool.insights();
    let top = ins
        .slowest
        .iter()
        .find(|s| s.input == SlowInput::Index(7))
        .unwrap_or_else(|| panic!("{ins}"));
    assert!(top.task.ends_with("::nap_opaque"), "{top:?}");
    assert!(top.time >= Duration::from_millis(50), "{top:?}");
    assert!(ins.to_string().contains("::nap_opaque(#7)"), "{ins}");
    assert!(ins
        .slowest
        .iter()
        .all(|s| !matches!(s.input, SlowInput::Debug(_))));
}

#[test]
fn a_slow_item_among_cheap_ones_is_found_alone_or_with_its_chunk() {
    let pool: Pool<()> = Pool::builder().workers(2).build(|_: &()| (), ()).unwrap();
    pool.map(square_but_one, 0..20_000).unwrap();
    let ins = pool.insights();
    eprintln!("{ins}");
    // Cheap items are timed per chunk: input 5000 shows as the chunk that
    // held it, unless it began its batch (then it was timed alone).
    let holds_5000 = |input: &SlowInput| match input {
        SlowInput::Debug(text) => text == "5000",
        SlowInput::Range { first, count } => {
            *count <= 64 && (*first..*first + *count as u64).contains(&5000)
        }
        SlowInput::Index(_) => false,
        _ => false,
    };
    let top = ins
        .slowest
        .iter()
        .find(|s| holds_5000(&s.input))
        .unwrap_or_else(|| panic!("{ins}"));
    assert!(top.time >= Duration::from_millis(50), "{ins}");
}

#[test]
fn a_worker_killed_on_purpose_counts_as_a_restart() {
    let pool = pool();
    let before: HashSet<u32> = pool
        .insights()
        .workers
        .iter()
        .filter_map(|w| w.pid)
        .collect();
    let outcomes: Vec<_> = pool.imap(abort_on_three, 0..10).collect();
    assert!(outcomes[3].is_err());
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 9);
    // A broadcast waits for every slot to be ready: the replacement too.
    let now: HashSet<u32> = pool.broadcast(pid, 0).unwrap().into_iter().collect();
    let ins = pool.insights();
    assert_eq!(ins.restarts(), 1, "{ins}");
    let slot = ins.workers.iter().find(|w| w.restarts == 1).unwrap();
    assert_eq!(slot.generation, 1);
    assert!(slot.init.is_some(), "{ins:?}");
    let new = slot.pid.unwrap();
    assert!(!before.contains(&new) && now.contains(&new), "{ins:?}");
    assert!(ins.tasks() >= 9); // the items before the death may have run twice
    assert!(ins
        .to_string()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("1")));
}
