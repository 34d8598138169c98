//! A host: the user's own program, started in worker mode with a Redis URL
//! in [`HOST_ENV`]. It looks for live pools in the registry, refuses those
//! whose code is not its own (and says why, where the driver reads it), and
//! serves each other one with a local pool of this crate's own: a fork
//! server and forked workers, each building its state once from the
//! driver's init arguments, fed from the pool's task stream instead of a
//! driver's channels. A worker that dies on a live host is this host's
//! business, handled at once as in any local pool; only a host's death
//! needs Redis, through its lease.
//!
//! Here: finding pools, and a session's life (its heartbeat, its inbox of
//! broadcasts, its exit hooks, its leaving). `consumer.rs`: taking entries,
//! running them, replying; `live.rs`: what a session's threads share.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{cmd, Script, Value};

use super::conn::{Conn, Endpoint};
use super::keys::{self, Keys, GROUP};
use super::local;
use super::wire::{self, HostConfig};
use crate::channel::message::Message;
use crate::channel::outcome;
use crate::driver::Driver;
use crate::error::Error;
use crate::sys;
use crate::worker;
use live::Live;

mod consumer;
mod live;

/// The variable that makes a program a host: the Redis URL to serve from.
pub const HOST_ENV: &str = "POOL_RUNTIME_REDIS_HOST";
/// How many workers a host runs for each pool (default: one per CPU).
pub const HOST_WORKERS_ENV: &str = "POOL_RUNTIME_HOST_WORKERS";
/// How long (µs) a host's worker may spin for its next frame before it
/// sleeps, yielding its CPU to any thread with work after the first 50 µs
/// (default 1000; `0`: never spin, for a host whose CPUs are shared with
/// other work). At most 10 ms.
pub const HOST_SPIN_ENV: &str = "POOL_RUNTIME_HOST_SPIN_US";
/// A CA certificate (PEM file) a host trusts for a `rediss://` URL, over
/// the system's (feature `redis-tls`).
pub const CA_ENV: &str = "POOL_RUNTIME_REDIS_CA";

/// How often a host looks for new pools.
const SCAN_EVERY: Duration = Duration::from_millis(100);

/// Serves as a host of the Redis at [`HOST_ENV`]; returns the exit code.
pub(crate) fn main() -> i32 {
    let Ok(url) = std::env::var(HOST_ENV) else {
        eprintln!("pool-runtime host: {HOST_ENV} is not valid UTF-8");
        return 2;
    };
    let url = url.as_str();
    crate::unwind::install_panic_hook();
    crate::registry::prepare();
    sys::flag_leave_signals();
    let ca = std::env::var_os(CA_ENV).map(std::path::PathBuf::from);
    let endpoint = match super::endpoint(url, ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pool-runtime host: bad Redis URL {}: {e}", super::redact(url));
            return 2;
        }
    };
    let workers = std::env::var(HOST_WORKERS_ENV)
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let spin = local::idle_spin(std::env::var(HOST_SPIN_ENV).ok().as_deref());
    let id = host_id();
    // A host waits out Redis being away: it is there to serve.
    let mut conn = match Conn::open(&endpoint, Duration::from_secs(3600)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "pool-runtime host: cannot connect to Redis at {}: {e}",
                super::redact(url)
            );
            return 2;
        }
    };
    let mut sessions: HashMap<String, JoinHandle<bool>> = HashMap::new();
    let mut refused: HashSet<String> = HashSet::new();
    while !sys::leave_asked() {
        // Pools whose driver stopped vouching for them are forgotten.
        let _ = conn.run::<()>(
            cmd("ZREMRANGEBYSCORE")
                .arg(keys::registry())
                .arg("-inf")
                .arg(wire::now_ms()),
        );
        let live: Vec<String> = conn
            .run(
                cmd("ZRANGEBYSCORE")
                    .arg(keys::registry())
                    .arg(wire::now_ms())
                    .arg("+inf"),
            )
            .unwrap_or_default();
        // A session ends when its pool is gone (a Redis that lost its data
        // loses it only until the driver writes it again) or ending.
        let ended: Vec<String> = sessions
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(p, _)| p.clone())
            .collect();
        for pool in ended {
            if let Some(t) = sessions.remove(&pool) {
                if t.join().unwrap_or(false) {
                    refused.insert(pool);
                }
            }
        }
        for pool in live {
            if sessions.contains_key(&pool) || refused.contains(&pool) {
                continue;
            }
            match offer(&mut conn, &pool, &id) {
                Offer::Serve(hello, config) => {
                    let session = Session {
                        keys: Keys::new(&pool),
                        host: id.clone(),
                        endpoint: endpoint.clone(),
                        config,
                        workers,
                        spin,
                    };
                    let t = std::thread::Builder::new()
                        .name("pool-redis-session".into())
                        .spawn(move || session.run(hello))
                        .expect("a session thread");
                    sessions.insert(pool, t);
                }
                Offer::Refuse => {
                    refused.insert(pool);
                }
                Offer::NotYet => {}
            }
        }
        std::thread::sleep(SCAN_EVERY);
    }
    for (_, t) in sessions {
        let _ = t.join();
    }
    0
}

/// This host's name in Redis: the machine, the process, and when it started.
fn host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{name}-{}-{nanos:08x}", std::process::id())
}

enum Offer {
    Serve(Vec<u8>, HostConfig),
    Refuse,
    NotYet,
}

/// Whether this host serves pool `pool`: its code must be ours.
fn offer(conn: &mut Conn, pool: &str, host: &str) -> Offer {
    let k = Keys::new(pool);
    /// A pool's greeting, settings and `closing` mark.
    type Published = (Option<Vec<u8>>, Option<String>, Option<String>);
    let got: redis::RedisResult<Published> = conn.run(
        cmd("HMGET")
            .arg(k.hello())
            .arg("hello")
            .arg("config")
            .arg("closing"),
    );
    let Ok((Some(hello), Some(config), None)) = got else {
        // Gone, not there yet, or ending: nothing to join.
        return Offer::NotYet;
    };
    let why = match (worker::check_hello(&hello), HostConfig::parse(&config)) {
        (Ok(_), Some(config)) => return Offer::Serve(hello, config),
        (Err(why), _) => why,
        (_, None) => format!("the pool's settings are malformed: {config:?}"),
    };
    refuse(conn, &k, host, &why);
    Offer::Refuse
}

/// Tells the driver why this host does not serve its pool.
fn refuse(conn: &mut Conn, k: &Keys, host: &str, why: &str) {
    let _ = conn.script::<Value>(
        &Script::new(wire::HSET_IF_LIVE),
        &[&k.hello(), &k.refused()],
        &[host.as_bytes(), why.as_bytes()],
    );
}

/// This host serving one pool.
struct Session {
    keys: Keys,
    host: String,
    endpoint: Endpoint,
    config: HostConfig,
    workers: usize,
    /// How long its workers may spin for their next frame.
    spin: Duration,
}

impl Session {
    /// Serves the pool until it ends or this host leaves; whether this
    /// host refused it (it is not to be offered again).
    fn run(self, hello: Vec<u8>) -> bool {
        let driver = match local::start(&self.config, (self.workers, self.spin), &hello) {
            Ok(d) => d,
            Err(why) => {
                let mut conn = Conn::lazy(&self.endpoint, Duration::from_secs(5));
                refuse(&mut conn, &self.keys, &self.host, &format!("init failed: {why}"));
                return true;
            }
        };
        drop(hello);
        let driver = Arc::new(driver);
        let live = Arc::new(Live::new());
        let me = Arc::new(self);
        // The first heartbeat registers this host: only then does it take work.
        let mut beat = Conn::lazy(&me.endpoint, me.config.lease);
        let sent = Instant::now();
        let first = me.try_heartbeat(&mut beat);
        if first.is_ok() {
            live.renewed(sent, me.config.lease, false);
        }
        match first {
            Ok(0) => {
                driver.shutdown(None);
                return false;
            }
            Err(e) if e.code() == Some("NOPERM") => {
                // An ACL user without scripts, or kept off the pool's keys:
                // the driver's `build` says why, in Redis's words.
                let why = format!("Redis denies this host's user what serving the pool needs: {e}");
                eprintln!("pool-runtime host: {why}");
                let k = &me.keys;
                let _ = beat.run::<()>(cmd("HSET").arg(k.refused()).arg(&me.host).arg(&why));
                driver.shutdown(None);
                return true;
            }
            _ => {}
        }
        // One consumer per worker, named `host/n`; each holds one entry, or
        // a few of short tasks (`Prefetch`), and takes dead hosts' entries.
        let consumers: Vec<JoinHandle<()>> = (0..me.workers)
            .map(|n| {
                let (me, live, driver) = (me.clone(), live.clone(), driver.clone());
                std::thread::Builder::new()
                    .name("pool-redis-consumer".into())
                    .spawn(move || me.consume(n, &driver, &live))
                    .expect("a consumer thread")
            })
            .collect();
        let inbox = {
            let (me, live, driver) = (me.clone(), live.clone(), driver.clone());
            std::thread::Builder::new()
                .name("pool-redis-inbox".into())
                .spawn(move || me.serve_inbox(&driver, &live))
                .expect("an inbox thread")
        };
        let every = (me.config.lease / 4).max(Duration::from_millis(10));
        let mut closing = None;
        while consumers.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(every);
            let sent = Instant::now();
            match me.heartbeat(&mut beat) {
                0 => live.leaving.store(true, Ordering::Release),
                n @ (1 | 2) => live.renewed(sent, me.config.lease, n == 2),
                3 => {
                    closing = closing.or_else(|| me.closing_hook(&mut beat));
                    live.leaving.store(true, Ordering::Release);
                }
                _ => {}
            }
            if sys::leave_asked() {
                live.leaving.store(true, Ordering::Release);
            }
        }
        for t in consumers.into_iter().chain([inbox]) {
            let _ = t.join();
        }
        // What consumers took and did not run goes back to the others.
        let hook = closing.flatten().or(me.config.exit_hook);
        if let Some(hook) = hook {
            me.run_exit_hooks(&driver, hook, &mut beat);
        }
        let k = &me.keys;
        let _ = beat.script::<Value>(
            &Script::new(wire::LEAVE),
            &[&k.tasks(), &k.lease(&me.host), &k.hosts()],
            &[
                GROUP.as_bytes(),
                me.host.as_bytes(),
                k.mark_prefix().as_bytes(),
                me.workers.to_string().as_bytes(),
                (me.config.lease * 10).as_millis().to_string().as_bytes(),
            ],
        );
        driver.shutdown(None);
        false
    }

    /// Renews the lease; see [`wire::HEARTBEAT`] for what it returns.
    fn heartbeat(&self, conn: &mut Conn) -> i64 {
        // Redis out of reach is not the pool gone: try again next beat.
        self.try_heartbeat(conn).unwrap_or(-1)
    }

    fn try_heartbeat(&self, conn: &mut Conn) -> redis::RedisResult<i64> {
        let k = &self.keys;
        let lease = self.config.lease.as_millis().to_string();
        let what = wire::host_entry(self.workers, std::process::id());
        conn.script::<i64>(
            &Script::new(wire::HEARTBEAT),
            &[&k.hello(), &k.lease(&self.host), &k.hosts()],
            &[
                lease.as_bytes(),
                self.host.as_bytes(),
                what.as_bytes(),
                k.mark_prefix().as_bytes(),
                self.workers.to_string().as_bytes(),
            ],
        )
    }

    /// The exit hook the driver asked for as it ends the pool, if any.
    fn closing_hook(&self, conn: &mut Conn) -> Option<Option<u32>> {
        let v: Option<String> = conn
            .run(cmd("HGET").arg(self.keys.hello()).arg("closing"))
            .ok()?;
        // `-`: the driver ends the pool without an exit hook.
        Some(v.and_then(|v| v.parse::<u32>().ok()))
    }

    /// Runs each broadcast sent to this host on every one of its workers,
    /// and sends their outcomes, in worker order, as one reply.
    fn serve_inbox(&self, driver: &Driver, live: &Live) {
        let k = &self.keys;
        let inbox = k.inbox(&self.host);
        let mut conn = Conn::lazy(&self.endpoint, self.config.lease.max(Duration::from_secs(5)));
        while !live.leaving.load(Ordering::Acquire) {
            let read: redis::RedisResult<Value> = conn.run(
                cmd("XREAD")
                    .arg("COUNT")
                    .arg(16)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&inbox)
                    .arg("0-0"),
            );
            let Ok(entries) = read.map(|v| wire::read_reply(&v)) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            for e in entries {
                let _ = conn.run::<()>(cmd("XDEL").arg(&inbox).arg(&e.id));
                let (Some(id), payload) = (e.number::<u64>("t"), e.field("f").unwrap_or_default()) else {
                    continue;
                };
                let Ok(Message::Run { count: 1, .. }) = Message::parse(payload) else {
                    continue;
                };
                let runs: Vec<(&[u8], Option<usize>)> = {
                    let core = driver.wait_until(|core| core.all_settled());
                    core.ready_slots().into_iter().map(|s| (payload, Some(s))).collect()
                };
                let Ok(ran) = local::run(driver, &runs) else {
                    continue;
                };
                let outcomes: Vec<u8> = ran.into_iter().flat_map(|r| r.outcomes).collect();
                let slots = &runs;
                let n = slots.len().to_string();
                let _ = conn.script::<i64>(
                    &Script::new(BROADCAST_REPLY),
                    &[&k.hello(), &k.replies()],
                    &[id.to_string().as_bytes(), self.host.as_bytes(), n.as_bytes(), &outcomes],
                );
            }
        }
        let _ = conn.run::<()>(cmd("DEL").arg(&inbox));
    }

    /// Runs exit hook `hook` on every local worker; each outcome goes to
    /// the driver.
    fn run_exit_hooks(&self, driver: &Driver, hook: u32, conn: &mut Conn) {
        let asked = driver.wait_until(|core| core.all_settled()).begin_exit(Some(hook));
        let mut outcomes: Vec<Option<Result<Vec<u8>, Error>>> = asked.iter().map(|_| None).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        drop(driver.wait_until(|core| {
            for (i, &slot) in asked.iter().enumerate() {
                if outcomes[i].is_none() {
                    outcomes[i] = core.exit_outcome(slot);
                }
            }
            outcomes.iter().all(Option::is_some) || Instant::now() > deadline
        }));
        let k = &self.keys;
        for o in outcomes.into_iter().flatten() {
            let body = match o {
                Ok(body) => body,
                Err(e) => {
                    let mut b = Vec::new();
                    outcome::write_error(&mut b, &e, &mut false);
                    b
                }
            };
            let _ = conn.script::<i64>(
                &Script::new(EXIT_REPLY),
                &[&k.hello(), &k.replies()],
                &[self.host.as_bytes(), &body],
            );
        }
    }
}

/// An exit-hook outcome for the driver, while its pool lives.
const EXIT_REPLY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'k', 'x', 'h', ARGV[1], 'b', ARGV[2])
return 1
"#;

/// A broadcast's outcomes for the driver, while its pool lives.
const BROADCAST_REPLY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'k', 'b', 't', ARGV[1], 'h', ARGV[2], 'n', ARGV[3], 'b', ARGV[4])
return 1
"#;

