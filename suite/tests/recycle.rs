//! Recycling: a worker leaves after n tasks or past a memory ceiling; its
//! exit hook runs and its outcome is kept for `join_with`; init failures on
//! respawn are bounded.

use std::path::PathBuf;

use pool_runtime::{worker_exit, worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

struct Count {
    served: u64,
    hoard: Vec<Vec<u8>>,
}

#[worker_init]
fn count(_: &()) -> Count {
    Count {
        served: 0,
        hoard: Vec::new(),
    }
}

#[worker_task]
fn serve(c: &mut Count, x: u64) -> u64 {
    c.served += 1;
    x
}

/// Keeps 20 MiB per call, touched so it is resident.
#[worker_task]
fn leak(c: &mut Count, x: u64) -> u64 {
    c.served += 1;
    c.hoard.push(vec![1u8; 20 << 20]);
    x
}

#[worker_exit]
fn served(c: Count) -> u64 {
    c.served
}

#[test]
fn workers_leave_after_n_tasks_and_their_exit_results_are_kept() {
    let pool = Pool::builder()
        .workers(2)
        .max_tasks_per_worker(10)
        .exit_hook(served)
        .build(count, ())
        .unwrap();
    assert_eq!(pool.map(serve, 0..95).unwrap(), (0..95).collect::<Vec<_>>());
    let per_worker = pool.join_with(served).unwrap();
    assert_eq!(per_worker.iter().sum::<u64>(), 95, "{per_worker:?}");
    assert!(per_worker.iter().all(|&n| n <= 10), "{per_worker:?}");
    assert!(
        per_worker.len() >= 10,
        "at least 9 recycled + 2 last: {per_worker:?}"
    );
}

#[test]
fn workers_leave_past_their_memory_ceiling() {
    let pool = Pool::builder()
        .workers(1)
        .max_worker_rss(100 << 20)
        .exit_hook(served)
        .build(count, ())
        .unwrap();
    assert_eq!(pool.map(leak, 0..12).unwrap().len(), 12);
    let per_worker = pool.join_with(served).unwrap();
    assert_eq!(per_worker.iter().sum::<u64>(), 12);
    assert!(
        per_worker.len() >= 3,
        "12 × 20 MiB under a 100 MiB ceiling needs several workers: {per_worker:?}"
    );
}

#[test]
fn an_exit_hook_of_another_state_fails_build() {
    #[worker_exit]
    fn other(s: String) -> usize {
        s.len()
    }
    let e = Pool::builder()
        .exit_hook(other)
        .build(count, ())
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Init(m) if m.contains("String")),
        "{e}"
    );
}

/// Succeeds for the first worker of each slot only: "the database went away".
#[worker_init]
fn first_time_only(dir: &PathBuf, me: WorkerInfo) -> Result<Count, String> {
    std::fs::write(
        dir.join(format!("attempt-{}-{}", me.index(), me.generation())),
        b"",
    )
    .unwrap();
    if me.generation() == 0 {
        Ok(Count {
            served: 0,
            hoard: Vec::new(),
        })
    } else {
        Err("database is gone".into())
    }
}

#[worker_task]
fn die_on(_c: &mut Count, x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x
}

#[test]
fn init_failing_on_respawn_is_bounded_and_said() {
    let dir = std::env::temp_dir().join(format!("pool-respawn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pool: Pool<Count> = Pool::builder()
        .workers(1)
        .respawn_limit(3)
        .build(first_time_only, dir.clone())
        .unwrap();
    let out: Vec<_> = pool.imap(die_on, 0..10).collect();
    assert_eq!(out.len(), 10, "every input has an outcome");
    assert!(out[..3].iter().all(Result::is_ok));
    assert!(matches!(
        out[3].as_ref().unwrap_err().kind(),
        ErrorKind::WorkerDied(_)
    ));
    for r in &out[4..] {
        let e = r.as_ref().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::PoolBroken(m) if m.contains("database is gone")),
            "{e}"
        );
    }
    // The first worker, then exactly three failed attempts: no fork loop.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
}
