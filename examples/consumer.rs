//! The `consumers` pattern: logic at the end of each worker's life.
//!
//! Each worker buffers what it has processed in its own state and writes it
//! all in one go when it ends (one file per worker here; one bulk insert in a
//! real program). `multiprocessing.Pool` has no hook for "this worker is
//! done"; `#[worker_exit]` is that hook, and `join_with` collects what each
//! worker's hook returned.
//!
//! ```text
//! cargo run --release --example consumer
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pool_runtime::{worker_exit, worker_init, worker_task, Pool, WorkerInfo};

const ITEMS: u64 = 200_000;
const WORKERS: usize = 2;

/// A worker's state: where its batch goes, and the batch so far.
struct Buffer {
    file: PathBuf,
    lines: Vec<String>,
}

#[worker_init]
fn start(dir: &PathBuf, me: WorkerInfo) -> Buffer {
    Buffer {
        file: dir.join(format!("worker-{}.txt", me.index())),
        lines: Vec::new(),
    }
}

/// Processes one item and keeps the result for the end.
#[worker_task]
fn consume(buf: &mut Buffer, id: u64) {
    buf.lines.push(format!("{id}\t{:x}", id * id));
}

/// Writes the whole batch at once; returns how many items this worker saw.
#[worker_exit]
fn flush(buf: Buffer) -> Result<u64, String> {
    let mut text = buf.lines.join("\n");
    text.push('\n');
    fs::write(&buf.file, text).map_err(|e| format!("{}: {e}", buf.file.display()))?;
    Ok(buf.lines.len() as u64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("pool-consumer-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = run(&dir);
    fs::remove_dir_all(&dir)?;
    result
}

fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let pool = Pool::builder()
        .workers(WORKERS)
        .build(start, dir.to_path_buf())?;
    pool.map(consume, 0..ITEMS)?;
    // Each worker runs `flush` as it ends; the counts come back in worker order.
    let counts = pool
        .join_with(flush)?
        .into_iter()
        .collect::<Result<Vec<u64>, String>>()?;
    println!(
        "{ITEMS} items consumed by {WORKERS} workers in {:.1?}",
        t.elapsed()
    );
    for (worker, n) in counts.iter().enumerate() {
        println!("  worker {worker}: {n} items, written in one batch at exit");
    }

    // Check: the counts add up, and the files hold every item exactly once.
    let mut seen = BTreeSet::new();
    let mut lines = 0u64;
    for worker in 0..WORKERS {
        for line in fs::read_to_string(dir.join(format!("worker-{worker}.txt")))?.lines() {
            let id: u64 = line.split('\t').next().unwrap_or_default().parse()?;
            seen.insert(id);
            lines += 1;
        }
    }
    let total: u64 = counts.iter().sum();
    // ITEMS distinct ids, the largest ITEMS - 1: exactly 0..ITEMS.
    let each_once = seen.len() as u64 == ITEMS && seen.last() == Some(&(ITEMS - 1));
    if total != ITEMS || lines != ITEMS || !each_once {
        return Err(format!(
            "expected {ITEMS} items: workers counted {total}, \
             files hold {lines} lines, {} distinct ids",
            seen.len()
        )
        .into());
    }
    println!("the per-worker counts add up to {total}, and the files hold each item once");
    Ok(())
}
