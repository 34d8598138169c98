//! The seeds' `multiprocessing.Value` + `Lock` example: four tasks each add
//! 1 to a shared counter under a lock, 10,000 times, on a pool of workers.
//! The total must be exactly 40,000; a lock-free atomic counts the tasks.
//! Then a worker dies holding the lock, and the next locker sees it
//! poisoned instead of hanging.
//!
//! ```text
//! cargo run --release --example shared_counter
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pool_runtime::shared::{SharedAtomic, SharedMutex, TryLockError};
use pool_runtime::{worker_init, worker_task, Pool};

const WORKERS: usize = 2;
const TASKS: usize = 4;
const TIMES: u32 = 10_000;

/// What every worker maps: made before `build`, cloned into each worker.
#[derive(Clone)]
struct Counters {
    total: SharedMutex<u64>,
    tasks: SharedAtomic<AtomicU64>,
}

#[worker_init]
fn keep(counters: &Counters) -> Counters {
    counters.clone()
}

#[worker_task]
fn add_many(c: &mut Counters, times: u32) {
    for _ in 0..times {
        *c.total.lock().expect("no holder died") += 1;
    }
    c.tasks.fetch_add(1, Ordering::Relaxed);
}

/// Takes the lock and crashes holding it (`abort`: no unwinding, the guard
/// is never dropped, as when a worker is killed).
#[worker_task]
fn die_holding_it(c: &mut Counters) {
    let _held = c.total.lock();
    std::process::abort();
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let counters = Counters {
        total: SharedMutex::new(0)?,
        tasks: SharedAtomic::new(AtomicU64::new(0))?,
    };
    let pool = Pool::builder()
        .workers(WORKERS)
        .task_timeout(Duration::from_secs(60))
        .build(keep, counters.clone())?;

    let t = Instant::now();
    pool.map(add_many, [TIMES; TASKS])?;
    let total = *counters.total.lock().map_err(|p| p.to_string())?;
    let tasks = counters.tasks.load(Ordering::Relaxed);
    println!(
        "{TASKS} tasks x {TIMES} adds under the lock on {WORKERS} workers: total {total}, tasks {tasks} ({:.1} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let want = TASKS as u64 * TIMES as u64;
    if total != want || tasks != TASKS as u64 {
        eprintln!("wrong: want total {want} and {TASKS} tasks");
        return Ok(ExitCode::FAILURE);
    }

    let died = pool.apply(die_holding_it, ());
    println!("a worker crashed holding the lock: {}", died.unwrap_err());
    match counters.total.lock_timeout(Duration::from_secs(10)) {
        Err(TryLockError::Poisoned(p)) => {
            let total = p.recover();
            println!(
                "the next locker sees it poisoned; recovered, total still {}",
                *total
            );
        }
        Err(TryLockError::WouldBlock) => {
            eprintln!("wrong: the dead holder's lock was never freed");
            return Ok(ExitCode::FAILURE);
        }
        Ok(_) => {
            eprintln!("wrong: the lock is not poisoned");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
