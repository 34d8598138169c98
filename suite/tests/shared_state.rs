//! State shared by all workers (`pool_runtime::shared`): the seeds'
//! `Value` + `Lock` example, atomics and arrays written by workers and read
//! by the driver, and a holder killed with the lock held: the next locker,
//! in a worker or the driver, sees it poisoned and can recover; no hang.
//! Every wait is bounded: lock timeouts in the tasks and the driver, and a
//! task timeout on every pool.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use pool_runtime::shared::{
    SharedArray, SharedAtomic, SharedAtomicArray, SharedBarrier, SharedEvent, SharedMutex,
    TryLockError,
};
use pool_runtime::{worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

/// Far longer than any wait here should take: a bound, not a pause.
const LIMIT: Duration = Duration::from_secs(20);

/// Everything the tests share, made before `build`.
#[derive(Clone)]
struct Shared {
    total: SharedMutex<u64>,
    calls: SharedAtomic<AtomicU64>,
    pids: SharedArray<u32>,
    flags: SharedAtomicArray<AtomicU32>,
    held: SharedEvent,
    barrier: SharedBarrier,
}

impl Shared {
    fn new(workers: usize) -> Shared {
        Shared {
            total: SharedMutex::new(0).unwrap(),
            calls: SharedAtomic::new(AtomicU64::new(0)).unwrap(),
            pids: SharedArray::new(workers, 0).unwrap(),
            flags: SharedAtomicArray::new(workers).unwrap(),
            held: SharedEvent::new().unwrap(),
            barrier: SharedBarrier::new(workers + 1).unwrap(),
        }
    }
}

struct Worker {
    shared: Shared,
    index: usize,
}

#[worker_init]
fn keep(shared: &Shared, info: WorkerInfo) -> Worker {
    Worker {
        shared: shared.clone(),
        index: info.index(),
    }
}

fn pool(workers: usize, shared: &Shared) -> Pool<Worker> {
    Pool::builder()
        .workers(workers)
        .task_timeout(LIMIT)
        .build(keep, shared.clone())
        .unwrap()
}

/// The seeds' task: add 1 under the lock, `times` times.
#[worker_task]
fn add_under_lock(w: &mut Worker, times: u32) {
    for _ in 0..times {
        *w.shared.total.lock_timeout(LIMIT).ok().unwrap() += 1;
    }
}

#[test]
fn seeds_example_four_tasks_adding_ten_thousand_under_the_lock_make_forty_thousand() {
    for workers in [2, 4] {
        let shared = Shared::new(workers);
        let pool = pool(workers, &shared);
        pool.map(add_under_lock, [10_000u32; 4]).unwrap();
        let total = *shared.total.lock_timeout(LIMIT).ok().unwrap();
        assert_eq!(total, 40_000, "{workers} workers");
    }
}

#[worker_task]
fn count_and_name(w: &mut Worker) -> u32 {
    w.shared.calls.fetch_add(1, Ordering::Relaxed);
    std::process::id()
}

#[worker_task]
fn add_to_counter(w: &mut Worker, x: u64) {
    w.shared.calls.fetch_add(x, Ordering::Relaxed);
}

#[test]
fn an_atomic_counter_sums_what_every_worker_adds() {
    let shared = Shared::new(3);
    let pool = pool(3, &shared);
    let pids = pool.broadcast(count_and_name, ()).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one call in each worker: {pids:?}");
    assert_eq!(shared.calls.load(Ordering::Relaxed), 3);
    pool.map(add_to_counter, 1..=1000u64).unwrap();
    assert_eq!(shared.calls.load(Ordering::Relaxed), 3 + 500_500);
}

/// Writes this worker's pid into its slot of both arrays.
#[worker_task]
fn write_my_slot(w: &mut Worker) -> (usize, u32) {
    let pid = std::process::id();
    w.shared.pids.lock_timeout(LIMIT).ok().unwrap()[w.index] = pid;
    w.shared.flags[w.index].store(pid, Ordering::Release);
    (w.index, pid)
}

#[test]
fn arrays_written_by_the_workers_are_read_by_the_driver() {
    let shared = Shared::new(2);
    let pool = pool(2, &shared);
    let wrote = pool.broadcast(write_my_slot, ()).unwrap();
    let pids = shared.pids.lock_timeout(LIMIT).ok().unwrap().to_vec();
    let flags: Vec<u32> = shared
        .flags
        .iter()
        .map(|f| f.load(Ordering::Acquire))
        .collect();
    for (index, pid) in wrote {
        assert_ne!(pid, std::process::id());
        assert_eq!(pids[index], pid, "{pids:?}");
        assert_eq!(flags[index], pid, "{flags:?}");
    }
}

/// Takes the lock, half-updates the value, says so, and dies holding it.
#[worker_task]
fn die_holding_the_lock(w: &mut Worker, how: String, linger_ms: u64) {
    let mut total = w.shared.total.lock_timeout(LIMIT).ok().unwrap();
    *total = 999;
    w.shared.held.set();
    std::thread::sleep(Duration::from_millis(linger_ms));
    match how.as_str() {
        "kill" => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        // SAFETY: ends the process at once, as a crash would: no unwinding,
        // so the guard is never dropped.
        _ => unsafe { libc::_exit(3) },
    }
    unreachable!("{how}: the worker is dead")
}

/// What a locker finds, without waiting past the limit.
#[worker_task]
fn try_the_lock(w: &mut Worker) -> String {
    match w.shared.total.lock_timeout(LIMIT) {
        Ok(v) => format!("ok {}", *v),
        Err(TryLockError::Poisoned(p)) => format!("poisoned {}", **p.get_ref()),
        Err(TryLockError::WouldBlock) => "timed out".to_string(),
    }
}

#[test]
fn a_worker_killed_holding_the_lock_poisons_it_for_the_driver_and_the_workers() {
    for how in ["kill", "exit"] {
        let shared = Shared::new(2);
        let pool = pool(2, &shared);
        let died = pool.apply(die_holding_the_lock, (how.to_string(), 0));
        assert!(
            matches!(
                died.as_ref().map_err(|e| e.kind()),
                Err(ErrorKind::WorkerDied(_))
            ),
            "{how}: {died:?}"
        );
        // The driver: poisoned, with the dead holder's half-update.
        let poisoned = match shared.total.lock_timeout(LIMIT) {
            Err(TryLockError::Poisoned(p)) => p,
            Err(TryLockError::WouldBlock) => {
                panic!("{how}: the dead holder's lock was never freed")
            }
            Ok(v) => panic!("{how}: not poisoned, value {}", *v),
        };
        assert_eq!(**poisoned.get_ref(), 999);
        drop(poisoned.into_inner());
        // Every process sees the poison, the replacement worker included.
        assert_eq!(
            pool.broadcast(try_the_lock, ()).unwrap(),
            ["poisoned 999"; 2]
        );
        // Recovered once, for everyone.
        let mut total = shared.total.lock().unwrap_err().recover();
        *total = 0;
        drop(total);
        assert_eq!(pool.broadcast(try_the_lock, ()).unwrap(), ["ok 0"; 2]);
        pool.map(add_under_lock, [1000u32; 4]).unwrap();
        assert_eq!(*shared.total.lock().unwrap(), 4000, "{how}");
    }
}

#[test]
fn a_worker_waiting_for_the_lock_wakes_poisoned_when_its_holder_dies() {
    let shared = Shared::new(2);
    let pool = pool(2, &shared);
    std::thread::scope(|s| {
        let dying = s.spawn(|| pool.apply(die_holding_the_lock, ("kill".to_string(), 300)));
        assert!(
            shared.held.wait_timeout(LIMIT),
            "the holder never took the lock"
        );
        // The other worker blocks in the lock until the holder dies.
        assert_eq!(pool.apply(try_the_lock, ()).unwrap(), "poisoned 999");
        assert!(dying.join().unwrap().is_err());
    });
}

#[worker_task]
fn panic_holding_the_lock(w: &mut Worker) {
    let mut total = w.shared.total.lock_timeout(LIMIT).ok().unwrap();
    *total += 1;
    panic!("mid-update");
}

#[test]
fn a_task_that_panics_holding_the_lock_poisons_it_and_the_worker_lives_on() {
    let shared = Shared::new(1);
    let pool = pool(1, &shared);
    let before = pool.apply(count_and_name, ()).unwrap();
    let r = pool.apply(panic_holding_the_lock, ());
    assert!(
        matches!(
            r.as_ref().map_err(|e| e.kind()),
            Err(ErrorKind::Panicked(_))
        ),
        "{r:?}"
    );
    assert_eq!(
        pool.apply(count_and_name, ()).unwrap(),
        before,
        "same worker"
    );
    assert!(shared.total.is_poisoned());
    assert_eq!(pool.apply(try_the_lock, ()).unwrap(), "poisoned 1");
    shared.total.clear_poison();
    assert_eq!(pool.apply(try_the_lock, ()).unwrap(), "ok 1");
}

#[worker_task]
fn meet(w: &mut Worker, wait_ms: u64) -> Result<bool, String> {
    w.shared
        .barrier
        .wait_timeout(Duration::from_millis(wait_ms))
        .map_err(|e| e.to_string())
}

#[test]
fn a_barrier_meets_across_processes_and_times_out_on_a_missing_party() {
    let shared = Shared::new(2);
    let pool = pool(2, &shared);
    let (mine, theirs) = std::thread::scope(|s| {
        let workers = s.spawn(|| pool.broadcast(meet, 20_000).unwrap());
        (shared.barrier.wait_timeout(LIMIT), workers.join().unwrap())
    });
    let mine = mine.map_err(|e| e.to_string());
    let leaders = theirs.iter().chain([&mine]).filter(|r| **r == Ok(true));
    assert_eq!(leaders.count(), 1, "{mine:?} {theirs:?}");
    // The driver stays away: the workers give up, and the barrier is usable.
    let alone = pool.broadcast(meet, 200).unwrap();
    assert!(alone.iter().all(|r| r.is_err()), "{alone:?}");
    let (mine, theirs) = std::thread::scope(|s| {
        let workers = s.spawn(|| pool.broadcast(meet, 20_000).unwrap());
        (shared.barrier.wait_timeout(LIMIT), workers.join().unwrap())
    });
    assert!(
        mine.is_ok() && theirs.iter().all(|r| r.is_ok()),
        "{mine:?} {theirs:?}"
    );
}
