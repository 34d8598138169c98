//! The seeds' workload on two Redis hosts, one of them killed mid-map:
//! the map completes, every key with its one result.
//!
//! ```sh
//! cargo run --release --example distributed --features redis
//! ```
//!
//! Starts its own `redis-server` (from `PATH`: Debian's `apt-get install
//! redis-server`) on a unix socket in a temp dir, and two hosts: this same
//! program in host mode. Each host's workers build the cache once from a
//! size (the init arguments cross with serde); the driver checks every
//! result against its own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, Pool};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CACHE_LEN: u32 = 1 << 20;
const KEYS: usize = 1_000_000;

#[worker_init]
fn build_cache(len: &u32) -> Vec<String> {
    (0..*len).map(|i| format!("{i:b}")).collect()
}

#[worker_task]
fn to_bits(cache: &Vec<String>, key: u32) -> Vec<u8> {
    cache[key as usize].bytes().map(|c| c - b'0').collect()
}

/// Killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pool_runtime::worker_mode(); // the hosts leave main here
    let dir = std::env::temp_dir().join(format!("pool-distributed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("redis.sock");
    let server = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("redis-server could not be started ({e}): install it (Debian: apt-get install -y redis-server)")
        })?;
    let _server = Reaped(server);
    let until = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if Instant::now() > until {
            return Err("redis-server did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("redis+unix://{}", sock.display());
    let host = || {
        Command::new(std::env::current_exe()?)
            .env(pool_runtime::redis::HOST_ENV, &url)
            .env(pool_runtime::redis::HOST_WORKERS_ENV, "1")
            .spawn()
            .map(Reaped)
    };
    let (victim, _survivor) = (host()?, host()?);

    let mut rng = SmallRng::seed_from_u64(2024);
    let keys: Vec<u32> = (0..KEYS).map(|_| rng.random_range(0..CACHE_LEN)).collect();
    let cache = build_cache(&CACHE_LEN);
    let expected: Vec<Vec<u8>> = keys.iter().map(|&k| to_bits(&cache, k)).collect();

    let t = Instant::now();
    let pool = Pool::builder()
        .redis(&url)
        .hosts(2)
        .lease(Duration::from_millis(500))
        .build(build_cache, CACHE_LEN)?;
    println!(
        "2 hosts joined, each built its cache, in {:.1?}",
        t.elapsed()
    );

    let t = Instant::now();
    let mut victim = Some(victim);
    let mut bits = Vec::with_capacity(KEYS);
    for (i, r) in pool.imap(to_bits, keys.iter().copied()).enumerate() {
        bits.push(r?);
        if i == KEYS / 4 {
            if let Some(mut v) = victim.take() {
                v.0.kill()?;
                println!("killed host {} after {} results", v.0.id(), i + 1);
            }
        }
    }
    let took = t.elapsed();
    println!(
        "{KEYS} keys through Redis in {took:.2?} ({:.0} k/s), one host killed on the way",
        KEYS as f64 / took.as_secs_f64() / 1e3
    );
    println!("\nper relay slot (pool.insights()):\n{}", pool.insights());
    pool.join()?;
    if bits != expected {
        return Err("a result differs from the sequential one".into());
    }
    println!("every result checked against a sequential run");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
