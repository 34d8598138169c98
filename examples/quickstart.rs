//! Quickstart: a big read-only cache built once in the driver, used by every
//! worker without ever being serialized or copied.
//!
//! The workload of the Python write-ups this crate answers: a cache of the
//! binary string of each of 2^20 integers, and a million random keys, each
//! turned into a bit vector (one byte, 0 or 1, per character of `cache[key]`).
//! With `multiprocessing.Pool` the cache must sit in a global; here it is the
//! argument of `#[worker_init]`, read copy-on-write after the fork.
//!
//! ```text
//! cargo run --release --example quickstart [-- --workers N]
//! ```

use std::sync::Arc;
use std::time::Instant;

use pool_runtime::{worker_init, worker_task, Pool};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CACHE_LEN: u32 = 1 << 20;
const KEYS: usize = 1_000_000;

/// Each worker's state: a handle on the driver's cache.
type Cache = Arc<Vec<String>>;

/// Runs once per worker, after the fork: `cache` is the driver's own, shared
/// copy-on-write, so cloning the `Arc` is all the work there is.
#[worker_init]
fn share(cache: &Cache) -> Cache {
    Arc::clone(cache)
}

/// Runs on a worker for each key: only the key and the bits cross processes.
#[worker_task]
fn to_bits(cache: &Cache, key: u32) -> Vec<u8> {
    cache[key as usize].bytes().map(|c| c - b'0').collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = workers_arg()?;

    let t = Instant::now();
    let cache: Cache = Arc::new((0..CACHE_LEN).map(|i| format!("{i:b}")).collect());
    let mut rng = SmallRng::seed_from_u64(2024);
    let keys: Vec<u32> = (0..KEYS).map(|_| rng.random_range(0..CACHE_LEN)).collect();
    println!(
        "cache of {CACHE_LEN} binary strings and {KEYS} keys built in {:.0?}",
        t.elapsed()
    );

    // Sequential: the task is still a plain function.
    let t = Instant::now();
    let expected: Vec<Vec<u8>> = keys.iter().map(|&k| to_bits(&cache, k)).collect();
    let sequential = t.elapsed();

    // On the pool: `build` moves a second handle on the cache into the workers.
    let t = Instant::now();
    let pool = Pool::builder()
        .workers(workers)
        .build(share, Arc::clone(&cache))?;
    let startup = t.elapsed();
    let bits = pool.map(to_bits, keys.iter().copied())?;
    let parallel = t.elapsed() - startup;
    // Again, on workers that have touched the cache once; then with each
    // output lent from the frame it came in (no `Vec` per output).
    let t = Instant::now();
    let again = pool.map(to_bits, keys.iter().copied())?;
    let warm = t.elapsed();
    let t = Instant::now();
    let slab = pool.map_slab(to_bits, keys.iter().copied())?;
    let slabbed = t.elapsed();
    // What each worker did: pid, items, busy and idle time, bytes moved.
    let insights = pool.insights();
    pool.join()?;

    let ones = |v: &[Vec<u8>]| v.iter().flatten().map(|&b| u64::from(b)).sum::<u64>();
    println!("sequential:    {sequential:>9.1?}");
    println!(
        "{workers}-worker pool: {parallel:>9.1?}  ({:.2}x sequential; pool build {startup:.1?})",
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    let speedup = |d: std::time::Duration| sequential.as_secs_f64() / d.as_secs_f64();
    println!(
        "  again, warm: {warm:>9.1?}  ({:.2}x sequential)",
        speedup(warm)
    );
    println!(
        "  map_slab:    {slabbed:>9.1?}  ({:.2}x sequential; outputs lent as &[u8])",
        speedup(slabbed)
    );
    println!("checksum: {} one-bits", ones(&bits));
    println!("\nper worker (pool.insights()):\n{insights}");
    if again != expected || !slab.iter().eq(expected.iter().map(Vec::as_slice)) {
        return Err("map_slab's outputs differ from sequential".into());
    }
    if bits != expected {
        return Err(format!(
            "pool result differs from sequential ({} vs {} one-bits)",
            ones(&bits),
            ones(&expected)
        )
        .into());
    }
    Ok(())
}

/// `--workers N`, default 2.
fn workers_arg() -> Result<usize, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(2),
        [flag, n] if flag == "--workers" => {
            n.parse().map_err(|e| format!("--workers {n}: {e}").into())
        }
        _ => Err("usage: quickstart [--workers N]".into()),
    }
}
