//! One SQLite connection per worker, all writing to one database file.
//!
//! The pattern Python users reach for a global for: open the connection once
//! per process (a connection must never cross a fork, let alone be pickled),
//! insert many records through it, commit at the end. Here the connection is
//! the worker's state, `#[worker_init]` opens it and `#[worker_exit]` commits.
//!
//! ```text
//! cargo run --release -p pool-suite --example sqlite_per_worker
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pool_runtime::{worker_exit, worker_init, worker_task, Pool, WorkerInfo};
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

const RECORDS: u64 = 100_000;
const WORKERS: usize = 2;

/// What crosses to a worker, one per task.
#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
}

/// A worker's state: its own connection, and the index it tags rows with.
struct Db {
    conn: Connection,
    worker: usize,
}

/// SQLite lets one connection write to a file at a time: a worker holding a
/// write transaction open until its exit hook would block every other worker.
/// So each worker stages its rows in a private in-memory `temp` table (no lock
/// on the shared file) and the exit hook moves them in one transaction.
#[worker_init]
fn open(path: &PathBuf, me: WorkerInfo) -> Result<Db, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch("CREATE TEMP TABLE pending (id INTEGER NOT NULL, name TEXT NOT NULL)")?;
    Ok(Db {
        conn,
        worker: me.index(),
    })
}

#[worker_task]
fn insert(db: &Db, rec: Record) -> Result<(), String> {
    let mut stmt = db
        .conn
        .prepare_cached("INSERT INTO temp.pending (id, name) VALUES (?1, ?2)")
        .map_err(|e| e.to_string())?;
    stmt.execute((rec.id, rec.name))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes this worker's rows to the shared table in one transaction; returns
/// how many.
#[worker_exit]
fn commit(db: Db) -> Result<u64, String> {
    let Db { mut conn, worker } = db;
    let mut flush = || -> rusqlite::Result<usize> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT INTO records (id, name, worker) SELECT id, name, ?1 FROM temp.pending",
            [worker],
        )?;
        tx.commit()?;
        Ok(n)
    };
    flush().map(|n| n as u64).map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("pool-sqlite-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = run(&dir.join("records.db"));
    fs::remove_dir_all(&dir)?;
    result
}

fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // The schema, from a connection closed before the fork: the workers must
    // not inherit an open one.
    Connection::open(path)?.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE records (id INTEGER NOT NULL, name TEXT NOT NULL, worker INTEGER NOT NULL);",
    )?;

    let t = Instant::now();
    let pool: Pool<Db> = Pool::builder()
        .workers(WORKERS)
        .build(open, path.to_path_buf())?;
    let records = (0..RECORDS).map(|id| Record {
        id,
        name: format!("record-{id}"),
    });
    pool.map(insert, records)?
        .into_iter()
        .collect::<Result<(), String>>()?;
    // One count per worker, in worker order.
    let per_worker = pool
        .join_with(commit)?
        .into_iter()
        .collect::<Result<Vec<u64>, String>>()?;
    let elapsed = t.elapsed();

    let conn = Connection::open(path)?;
    let (rows, distinct, max): (u64, u64, u64) = conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT id), MAX(id) FROM records",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    println!("{rows} rows inserted by {WORKERS} workers, one connection each, in {elapsed:.1?}");
    for (worker, &n) in per_worker.iter().enumerate() {
        let stored: u64 = conn.query_row(
            "SELECT COUNT(*) FROM records WHERE worker = ?1",
            [worker],
            |r| r.get(0),
        )?;
        println!("  worker {worker}: {n} rows (table says {stored})");
        if stored != n {
            return Err(
                format!("worker {worker} reported {n} rows, the table holds {stored}").into(),
            );
        }
    }
    let reported: u64 = per_worker.iter().sum();
    if rows != RECORDS || distinct != RECORDS || max != RECORDS - 1 || reported != RECORDS {
        return Err(format!(
            "expected ids 0..{RECORDS} once each: {rows} rows, {distinct} distinct, \
             max {max}, workers reported {reported}"
        )
        .into());
    }
    println!("every record stored exactly once");
    Ok(())
}
