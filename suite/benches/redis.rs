//! The Redis backend against raw Redis loops on the same `redis-server`, in
//! the same run, interleaved round by round (BENCHMARKS.md, "Issue 12").
//!
//! ```text
//! cargo bench -p pool-suite --bench redis              # every case
//! cargo bench -p pool-suite --bench redis -- --quick   # smaller sizes
//! ```
//!
//! It starts its own `redis-server` (Debian's, on a unix socket, no
//! persistence) and two hosts of one worker each: this bench binary in host
//! mode. References, with the `redis` crate on the same server:
//! R1 a raw XADD/XREADGROUP/XACK loop with one task per entry, R2 with 64 per
//! entry, R3 one raw round trip (driver → consumer → driver). Case
//! `dramatiq` runs Dramatiq (`python/dramatiq_redis.py`) on the same server,
//! installing it with pip under `target/bench-python` if it is missing.

#[path = "common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{median, median_ratio, Opts};
use pool_runtime::{worker_init, worker_task, Pool};
use redis::{cmd, Value};

struct NoState;

#[worker_init]
fn no_state(_: &()) -> NoState {
    NoState
}

#[worker_task]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[worker_task]
fn nap(_: &mut NoState, ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Killed on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Server {
    _child: Reaped,
    url: String,
    dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Server {
        Server::start_in("main")
    }

    fn start_in(name: &str) -> Server {
        let dir =
            std::env::temp_dir().join(format!("pool-redis-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian: apt-get install -y redis-server)");
        let until = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < until, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            _child: Reaped(child),
            url: format!("redis+unix://{}", sock.display()),
            dir,
        }
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn host(&self) -> Reaped {
        Reaped(
            Command::new(std::env::current_exe().unwrap())
                .env(pool_runtime::redis::HOST_ENV, &self.url)
                .env(pool_runtime::redis::HOST_WORKERS_ENV, "1")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Hosts serving a pool of this server.
    fn hosts(&self, con: &mut redis::Connection) -> usize {
        let keys: Vec<String> = cmd("KEYS").arg("pool-runtime:*:hosts").query(con).unwrap();
        keys.iter()
            .map(|k| cmd("HLEN").arg(k).query::<usize>(con).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    fn used_memory(&self, con: &mut redis::Connection) -> u64 {
        let info: String = cmd("INFO").arg("memory").query(con).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn entries(v: &Value) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Value::Array(streams) = v {
        for s in streams {
            if let Value::Array(pair) = s {
                if let Some(Value::Array(es)) = pair.get(1) {
                    for e in es {
                        if let Value::Array(p) = e {
                            if let (Some(Value::BulkString(id)), Some(Value::Array(f))) =
                                (p.first(), p.get(1))
                            {
                                if let Some(Value::BulkString(b)) = f.get(1) {
                                    out.push((String::from_utf8_lossy(id).into_owned(), b.clone()));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// A raw loop: `n` tasks (squares), `per` to an entry, through a stream
/// and a consumer group read by two consumers, back on a reply stream.
/// Returns tasks per second.
fn raw_loop(server: &Server, n: u64, per: u64, round: u32) -> f64 {
    let (tasks, replies) = (format!("raw:{round}:tasks"), format!("raw:{round}:replies"));
    let mut con = server.conn();
    let _: () = cmd("XGROUP")
        .arg("CREATE")
        .arg(&tasks)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut con)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..2)
        .map(|c| {
            let (mut con, tasks, replies, stop) =
                (server.conn(), tasks.clone(), replies.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let v: Value = cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg("g")
                        .arg(format!("c{c}"))
                        .arg("COUNT")
                        .arg(256)
                        .arg("BLOCK")
                        .arg(20)
                        .arg("STREAMS")
                        .arg(&tasks)
                        .arg(">")
                        .query(&mut con)
                        .unwrap();
                    let got = entries(&v);
                    if got.is_empty() {
                        continue;
                    }
                    let mut pipe = redis::pipe();
                    for (id, body) in &got {
                        let out: Vec<u8> = body
                            .chunks_exact(8)
                            .flat_map(|b| {
                                square(u64::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                            })
                            .collect();
                        pipe.cmd("XADD")
                            .arg(&replies)
                            .arg("*")
                            .arg("b")
                            .arg(out)
                            .ignore();
                        pipe.cmd("XACK").arg(&tasks).arg("g").arg(id).ignore();
                        pipe.cmd("XDEL").arg(&tasks).arg(id).ignore();
                    }
                    let _: () = pipe.query(&mut con).unwrap();
                }
            })
        })
        .collect();
    let t = Instant::now();
    let producer = {
        let (mut con, tasks) = (server.conn(), tasks.clone());
        std::thread::spawn(move || {
            let mut x = 0u64;
            while x < n {
                let mut pipe = redis::pipe();
                for _ in 0..256 {
                    if x >= n {
                        break;
                    }
                    let body: Vec<u8> = (x..(x + per).min(n))
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    x += per;
                    pipe.cmd("XADD")
                        .arg(&tasks)
                        .arg("*")
                        .arg("b")
                        .arg(body)
                        .ignore();
                }
                let _: () = pipe.query(&mut con).unwrap();
            }
        })
    };
    let mut done = 0u64;
    while done < n {
        let v: Value = cmd("XREAD")
            .arg("COUNT")
            .arg(1024)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(&replies)
            .arg("0-0")
            .query(&mut con)
            .unwrap();
        let got = entries(&v);
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        done += got.iter().map(|(_, b)| b.len() as u64 / 8).sum::<u64>();
        if !ids.is_empty() {
            let _: () = cmd("XDEL").arg(&replies).arg(&ids).query(&mut con).unwrap();
        }
    }
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    for c in consumers {
        c.join().unwrap();
    }
    let _: () = cmd("DEL")
        .arg(&tasks)
        .arg(&replies)
        .query(&mut con)
        .unwrap();
    n as f64 / took.as_secs_f64()
}

/// One raw round trip, `n` times: the p50, in seconds.
fn raw_round_trip(server: &Server, n: usize) -> f64 {
    let mut con = server.conn();
    let _: Value = cmd("XGROUP")
        .arg("CREATE")
        .arg("rt:tasks")
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut con)
        .unwrap_or(Value::Nil);
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (mut con, stop) = (server.conn(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let v: Value = cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("c")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(20)
                    .arg("STREAMS")
                    .arg("rt:tasks")
                    .arg(">")
                    .query(&mut con)
                    .unwrap();
                for (id, body) in entries(&v) {
                    let mut pipe = redis::pipe();
                    pipe.cmd("XADD")
                        .arg("rt:replies")
                        .arg("*")
                        .arg("b")
                        .arg(body)
                        .ignore();
                    pipe.cmd("XACK").arg("rt:tasks").arg("g").arg(&id).ignore();
                    pipe.cmd("XDEL").arg("rt:tasks").arg(&id).ignore();
                    let _: () = pipe.query(&mut con).unwrap();
                }
            }
        })
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let _: Value = cmd("XADD")
            .arg("rt:tasks")
            .arg("*")
            .arg("b")
            .arg(i.to_le_bytes().to_vec())
            .query(&mut con)
            .unwrap();
        loop {
            let v: Value = cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg("rt:replies")
                .arg("0-0")
                .query(&mut con)
                .unwrap();
            let got = entries(&v);
            if let Some((id, _)) = got.first() {
                let _: () = cmd("XDEL")
                    .arg("rt:replies")
                    .arg(id)
                    .query(&mut con)
                    .unwrap();
                break;
            }
        }
        times.push(t.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();
    let _: () = cmd("DEL")
        .arg("rt:tasks")
        .arg("rt:replies")
        .query(&mut con)
        .unwrap();
    median(&times)
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.1} k/s", r / 1e3)
    }
}

fn main() {
    pool_runtime::worker_mode(); // the hosts are this bench run again
    let opts = Opts::from_args();
    println!(
        "# redis bench{}",
        if opts.quick { " (--quick)" } else { "" }
    );
    println!("machine: {}", common::machine());
    println!("load average at start: {}", common::loadavg());
    let server = Server::start();
    let mut con = server.conn();
    let version: String = cmd("INFO")
        .arg("server")
        .query::<String>(&mut con)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_string))
        .unwrap_or_default();
    println!(
        "redis-server {version}, unix socket, no persistence; 2 hosts x 1 worker (this binary)"
    );
    let _hosts = [server.host(), server.host()];
    let pool = Pool::builder()
        .redis(&server.url)
        .hosts(2)
        .lease(Duration::from_millis(500))
        .build(no_state, ())
        .expect("build");
    let runs = opts.runs.min(5);
    let n = opts.size(2_000_000, 200_000) as u64;
    let n1 = opts.size(20_000, 5_000) as u64;
    let mut rows: Vec<String> = Vec::new();

    if opts.wants("tiny") {
        let (mut p, mut r) = (vec![], vec![]);
        for round in 0..=runs {
            let pool_run = || {
                let t = Instant::now();
                let out = pool.map(square, 0..n).unwrap();
                assert_eq!(out.len() as u64, n);
                n as f64 / t.elapsed().as_secs_f64()
            };
            let (a, b) = if round % 2 == 0 {
                (pool_run(), raw_loop(&server, n, 64, round as u32))
            } else {
                let b = raw_loop(&server, n, 64, round as u32);
                (pool_run(), b)
            };
            if round > 0 {
                p.push(a);
                r.push(b);
            }
        }
        let ratio = median_ratio(&p, &r);
        println!("tiny map, {n} squares: pool {}  R2 (64/entry) {}  ratio {ratio:.2}x (target >= 0.5x, >= 1 M/s)", rate(median(&p)), rate(median(&r)));
        rows.push(format!(
            "| tiny `map`, 2 hosts | {} | R2 {} | {ratio:.2}x | >= 0.5x and >= 1 M/s |",
            rate(median(&p)),
            rate(median(&r))
        ));
    }
    if opts.wants("chunk1") {
        let (mut p, mut r) = (vec![], vec![]);
        let one = one_per_entry(&server);
        for round in 0..=runs {
            let t = Instant::now();
            one.map(square, 0..n1).unwrap();
            let a = n1 as f64 / t.elapsed().as_secs_f64();
            let b = raw_loop(&server, n1, 1, 100 + round as u32);
            if round > 0 {
                p.push(a);
                r.push(b);
            }
        }
        let ratio = median_ratio(&p, &r);
        println!("chunk_size(1), {n1} squares: pool {}  R1 (1/entry) {}  ratio {ratio:.2}x (target >= 0.7x)", rate(median(&p)), rate(median(&r)));
        rows.push(format!(
            "| `chunk_size(1)` `map` | {} | R1 {} | {ratio:.2}x | >= 0.7x |",
            rate(median(&p)),
            rate(median(&r))
        ));
    }
    if opts.wants("apply") {
        let (mut p, mut r) = (vec![], vec![]);
        let k = opts.size(2000, 300);
        for _ in 0..runs {
            p.push(apply_p50(&pool, k));
            r.push(raw_round_trip(&server, k));
        }
        let ratio = median_ratio(&p, &r);
        println!(
            "apply p50: pool {:.0} us  R3 {:.0} us  ratio {ratio:.2}x (target <= 1.5x)",
            median(&p) * 1e6,
            median(&r) * 1e6
        );
        rows.push(format!(
            "| `apply` p50 | {:.0} µs | R3 {:.0} µs | {ratio:.2}x | <= 1.5x |",
            median(&p) * 1e6,
            median(&r) * 1e6
        ));
    }
    if opts.wants("memory") {
        let m = opts.size(10_000_000, 1_000_000) as u64;
        let base = server.used_memory(&mut con);
        let peak = Arc::new(AtomicU64::new(base));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop, mut con) = (peak.clone(), stop.clone(), server.conn());
            let server_url = server.url.clone();
            std::thread::spawn(move || {
                let _ = server_url;
                while !stop.load(Ordering::Relaxed) {
                    let info: String = cmd("INFO").arg("memory").query(&mut con).unwrap();
                    let used = info
                        .lines()
                        .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
                        .unwrap_or(0);
                    peak.fetch_max(used, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let t = Instant::now();
        let mut count = 0u64;
        for r in pool.imap(square, 0..m) {
            r.unwrap();
            count += 1;
        }
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        assert_eq!(count, m);
        let grew = peak.load(Ordering::Relaxed).saturating_sub(base) as f64 / (1 << 20) as f64;
        println!("lazy imap of {m}: {:.1} s ({}), Redis peak {grew:.1} MiB above baseline (target <= 64 MiB)", took.as_secs_f64(), rate(m as f64 / took.as_secs_f64()));
        rows.push(format!("| Redis memory, lazy `imap` of {m} | {grew:.1} MiB above baseline | - | - | <= 64 MiB |"));
    }
    if opts.wants("dead") {
        // A host killed holding an input: the time from the kill to the
        // input's result, less the input's own 1 s run elsewhere. On a
        // server of its own, so that the victim is the one that takes it.
        let mut waits = vec![];
        for _ in 0..runs {
            let own = Server::start_in("dead");
            let victim = own.host();
            let solo = Pool::builder()
                .redis(&own.url)
                .lease(Duration::from_millis(500))
                .build(no_state, ())
                .expect("build");
            let h = solo.submit(nap, 1000);
            let _survivor = own.host();
            let mut c = own.conn();
            let until = Instant::now() + Duration::from_secs(10);
            while own.hosts(&mut c) < 2 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(victim);
            let t = Instant::now();
            let ran_on = h.wait().unwrap();
            waits.push(t.elapsed().as_secs_f64() - 1.0);
            assert_ne!(ran_on, 0);
            solo.join().unwrap();
        }
        println!(
            "dead host: input re-run {:.2} s after the kill (median of {}; lease 0.5 s; target <= lease + 1 s)",
            median(&waits),
            waits.len()
        );
        rows.push(format!(
            "| a dead host's input re-run | {:.2} s after the kill | lease 0.5 s | - | <= 1.5 s |",
            median(&waits)
        ));
    }
    if opts.wants("dramatiq") {
        match dramatiq() {
            Err(why) => println!("dramatiq: skipped ({why})"),
            Ok(py) => {
                // The same work both ways, alternating: one task per
                // message (Dramatiq has no batching) against the pool's
                // `map` with no knob and with `chunk_size(1)`, and a round trip.
                let one = one_per_entry(&server);
                let (nd, calls) = (opts.size(20_000, 4_000), opts.size(300, 100));
                let (mut d_rate, mut d_apply, mut p_map, mut p_one, mut p_apply) =
                    (vec![], vec![], vec![], vec![], vec![]);
                for _ in 0..runs.min(3) {
                    let t = Instant::now();
                    pool.map(square, 0..nd as u64).unwrap();
                    p_map.push(nd as f64 / t.elapsed().as_secs_f64());
                    let t = Instant::now();
                    one.map(square, 0..nd as u64).unwrap();
                    p_one.push(nd as f64 / t.elapsed().as_secs_f64());
                    p_apply.push(apply_p50(&pool, calls));
                    let Some((rate, apply)) = run_dramatiq(&py, &server, nd, calls) else {
                        break;
                    };
                    d_rate.push(rate);
                    d_apply.push(apply);
                }
                if !d_rate.is_empty() {
                    let (dr, da) = (median(&d_rate), median(&d_apply));
                    println!(
                        "dramatiq ({} tasks, 2 processes x 8 threads): {} and apply p50 {:.2} ms; pool map {} ({:.0}x), chunk_size(1) {} ({:.1}x), apply p50 {:.0} us ({:.0}x faster)",
                        nd,
                        rate(dr),
                        da * 1e3,
                        rate(median(&p_map)),
                        median(&p_map) / dr,
                        rate(median(&p_one)),
                        median(&p_one) / dr,
                        median(&p_apply) * 1e6,
                        da / median(&p_apply)
                    );
                    rows.push(format!(
                        "| {nd} tasks, no knob / `chunk_size(1)` | {} / {} | Dramatiq {} | {:.0}x / {:.1}x | - |",
                        rate(median(&p_map)),
                        rate(median(&p_one)),
                        rate(dr),
                        median(&p_map) / dr,
                        median(&p_one) / dr
                    ));
                    rows.push(format!(
                        "| `apply` p50 | {:.0} µs | Dramatiq {:.2} ms | {:.0}x faster | - |",
                        median(&p_apply) * 1e6,
                        da * 1e3,
                        da / median(&p_apply)
                    ));
                }
                one.join().unwrap();
            }
        }
    }
    pool.join().unwrap();
    println!("\n| case | pool | reference | ratio | target |\n|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("\nload average at the end: {}", common::loadavg());
}

/// A Python with Dramatiq and redis-py: the system's, or one with them
/// installed (`pip install --target`) under the target directory.
fn dramatiq() -> Result<(String, Option<std::path::PathBuf>), String> {
    let py = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or("no python3")?;
    let has = |path: Option<&std::path::Path>| {
        let mut c = Command::new(py);
        c.args(["-c", "import dramatiq, redis"]);
        if let Some(p) = path {
            c.env("PYTHONPATH", p);
        }
        c.output().is_ok_and(|o| o.status.success())
    };
    if has(None) {
        return Ok((py.to_string(), None));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-python");
    if !has(Some(&dir)) {
        println!(
            "dramatiq: installing it under {} (pip install --target)",
            dir.display()
        );
        let ok = Command::new(py)
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&dir)
            .args(["dramatiq", "redis"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !has(Some(&dir)) {
            return Err("dramatiq is not installed and pip could not install it".into());
        }
    }
    Ok((py.to_string(), Some(dir)))
}

/// One run of `python/dramatiq_redis.py`: its rate (tasks/s) and `apply` p50 (s).
fn run_dramatiq(
    py: &(String, Option<std::path::PathBuf>),
    server: &Server,
    n: usize,
    calls: usize,
) -> Option<(f64, f64)> {
    let script = format!(
        "{}/benches/python/dramatiq_redis.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = Command::new(&py.0);
    c.arg(script)
        .arg(server.dir.join("redis.sock"))
        .arg(n.to_string())
        .arg(calls.to_string());
    if let Some(p) = &py.1 {
        c.env("PYTHONPATH", p);
    }
    let out = c.output().ok()?;
    if !out.status.success() {
        println!("dramatiq failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
    };
    Some((get("rate")?, get("apply_p50")?))
}

/// The median of `k` `apply` round trips, in seconds.
fn apply_p50(pool: &Pool<NoState>, k: usize) -> f64 {
    let mut times = Vec::with_capacity(k);
    for i in 0..k as u64 {
        let t = Instant::now();
        pool.apply(square, i).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    median(&times)
}

/// A pool on the bench's two hosts that sends one input per entry.
fn one_per_entry(server: &Server) -> Pool<NoState> {
    Pool::builder()
        .redis(&server.url)
        .hosts(2)
        .chunk_size(1)
        .build(no_state, ())
        .expect("build")
}
