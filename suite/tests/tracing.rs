//! `tracing` integration: a subscriber installed before `build` is
//! inherited by the forked workers, so their spans land in the same file as
//! the driver's: `build`, `init` (with the worker's pid), `batch` (with the
//! task's name), `respawn` (slot, old pid, why) after a worker is killed.
//!
//! One test in this binary: the subscriber is global, for the whole process.

use std::fs::OpenOptions;
use std::sync::Arc;

use pool_runtime::{registry, worker_init, worker_task, Pool};
use tracing_subscriber::fmt::format::FmtSpan;

#[worker_init]
fn start(_: &()) -> u32 {
    std::process::id()
}

#[worker_task]
fn pid(me: &mut u32, _x: u32) -> u32 {
    *me
}

#[worker_task]
fn abort_on_three(_: &mut u32, x: u32) -> u32 {
    if x == 3 {
        std::process::abort();
    }
    x
}

#[test]
fn driver_and_worker_spans_reach_one_subscriber() {
    let dir = std::env::temp_dir().join(format!("pool-tracing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.log");
    // O_APPEND: the driver's and each worker's lines never overwrite each
    // other. `Arc<File>` writes without a lock (a `Mutex` held by another
    // thread at the fork would stay locked in every worker).
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    drop(file);
    let file = OpenOptions::new().append(true).open(&path).unwrap();
    tracing_subscriber::fmt()
        .with_writer(Arc::new(file))
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_span_events(FmtSpan::NEW)
        .init();

    let pool: Pool<u32> = Pool::builder().workers(2).build(start, ()).unwrap();
    let pids: Vec<u32> = pool.broadcast(pid, 0).unwrap();
    let outcomes: Vec<_> = pool.imap(abort_on_three, 0..10).collect();
    assert!(outcomes[3].is_err());
    // A broadcast waits for every slot to be ready: the replacement too.
    let after: Vec<u32> = pool.broadcast(pid, 0).unwrap();
    let new: Vec<u32> = after.into_iter().filter(|p| !pids.contains(p)).collect();
    assert_eq!(new.len(), 1, "{pids:?}");
    pool.join().unwrap();

    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{log}");
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert!(lines("build{workers=2") >= 1, "{log}");
    assert!(log.contains("pool built"), "{log}");
    for p in &pids {
        // Written by the worker itself, from its own process.
        assert!(lines(&format!("init{{pid={p} ")) >= 1, "{p}: {log}");
    }
    assert!(
        lines(&format!("init{{pid={} worker=", new[0])) >= 1,
        "the replacement's init: {log}"
    );
    assert!(log.contains("generation=1}"), "{log}");
    assert!(
        lines("worker ready") >= 3,
        "two workers and a replacement: {log}"
    );
    let name = registry::task_name(pid).unwrap();
    assert!(
        lines(&format!("batch{{task=\"{name}\" count=1 pid=")) >= 2,
        "{log}"
    );
    let abort = registry::task_name(abort_on_three).unwrap();
    assert!(lines(&format!("batch{{task=\"{abort}\"")) >= 1, "{log}");
    let respawn = log
        .lines()
        .find(|l| l.contains("respawn{slot="))
        .unwrap_or_else(|| panic!("no respawn: {log}"));
    assert!(respawn.contains("old_pid="), "{respawn}");
    assert!(
        respawn.contains("why=killed by signal 6 (SIGABRT)"),
        "{respawn}"
    );
    assert!(respawn.contains("generation=1"), "{respawn}");
    let old: u32 = respawn
        .split("old_pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(pids.contains(&old), "{old} is not one of {pids:?}");
}
