//! A host: the user's own program, started in worker mode with a Redis URL
//! in [`HOST_ENV`]. It looks for live pools in the registry, refuses those
//! whose code is not its own (and says why, where the driver reads it), and
//! serves each other one with a local pool of this crate's own: a fork
//! server and forked workers, each building its state once from the
//! driver's init arguments, fed from the pool's task stream instead of a
//! driver's channels. A worker that dies on a live host is this host's
//! business, handled at once as in any local pool; only a host's death
//! needs Redis, through its lease.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{cmd, Script, Value};

use super::conn::{Conn, Endpoint, Pipe};
use super::keys::{self, Keys, GROUP};
use super::local;
use super::wire::{self, Entry, HostConfig};
use crate::channel::message::Message;
use crate::channel::outcome;
use crate::driver::Driver;
use crate::error::{Error, ErrorKind};
use crate::sys;
use crate::worker;

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

/// What a session's threads share.
struct Live {
    /// The pool is gone or ending, or this host leaves: take no more.
    leaving: AtomicBool,
    /// Until when (µs after `born`) this host's lease is surely alive: a
    /// quarter lease short of the lease from when the last heartbeat that
    /// renewed it was sent (Redis counts from when it ran it, later).
    leased_until: AtomicU64,
    /// How many heartbeats found the lease had lapsed: what a consumer
    /// held before one of them may be another host's now.
    lapses: AtomicU64,
    born: Instant,
}

impl Live {
    fn new() -> Live {
        Live {
            leaving: AtomicBool::new(false),
            leased_until: AtomicU64::new(0),
            lapses: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// A heartbeat sent at `sent` renewed a lease of `lease`; it had
    /// lapsed before, if `lapsed`.
    fn renewed(&self, sent: Instant, lease: Duration, lapsed: bool) {
        if lapsed {
            self.lapses.fetch_add(1, Ordering::AcqRel);
        }
        let until = (sent + lease - lease / 4).saturating_duration_since(self.born);
        self.leased_until.fetch_max(until.as_micros() as u64, Ordering::AcqRel);
    }

    fn leased(&self) -> bool {
        (self.born.elapsed().as_micros() as u64) < self.leased_until.load(Ordering::Acquire)
    }

    /// Whether what a consumer took when `lapses` was `seen` is still its
    /// own to run: waits while the lease may have lapsed, until a
    /// heartbeat says whether it had. `false` also when the host leaves.
    fn still_own(&self, seen: u64) -> bool {
        loop {
            if self.lapses.load(Ordering::Acquire) != seen || self.leaving.load(Ordering::Acquire) {
                return false;
            }
            if self.leased() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Where a consumer marks the entry it runs (see [`wire::RECLAIM`]).
struct Mark {
    key: String,
    /// How long the mark outlives the last heartbeat that kept it.
    ttl_ms: u64,
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
        let what = format!("{} workers, pid {}", self.workers, std::process::id());
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

    /// Entries for consumer `me`, which holds none now: its own pending
    /// ones first (delivered by a read whose answer a cut connection lost:
    /// it never saw them), then those of dead hosts' consumers.
    fn reclaim(&self, conn: &mut Conn, script: &Script, me: &str) -> Vec<(Entry, u32)> {
        let k = &self.keys;
        let own: redis::RedisResult<Vec<(String, String, u64, u32)>> = conn.run(
            cmd("XPENDING")
                .arg(k.tasks())
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(Prefetch::MAX)
                .arg(me),
        );
        if let Ok(own) = own {
            if !own.is_empty() {
                // Claimed again with the deliveries each had (a claim counts
                // one more): this host never ran them.
                let mut by_count = std::collections::BTreeMap::<u32, Vec<&str>>::new();
                for (id, _, _, n) in &own {
                    by_count.entry((*n).max(1)).or_default().push(id);
                }
                let mut pipe = Pipe::new();
                for (n, ids) in &by_count {
                    pipe.cmd("XCLAIM")
                        .arg(k.tasks())
                        .arg(GROUP)
                        .arg(me)
                        .arg(0)
                        .arg(ids)
                        .arg("RETRYCOUNT")
                        .arg(n);
                }
                if let Ok(got) = conn.pipe::<Vec<Value>>(&pipe) {
                    return by_count
                        .keys()
                        .zip(&got)
                        .flat_map(|(&n, v)| match v {
                            Value::Array(entries) => entries.iter().filter_map(wire::entry).map(|e| (e, n)).collect(),
                            _ => Vec::new(),
                        })
                        .collect();
                }
            }
        }
        let most = Prefetch::MAX.to_string();
        let got: redis::RedisResult<Value> = conn.script(
            script,
            &[&k.tasks(), &k.hello()],
            &[
                GROUP.as_bytes(),
                me.as_bytes(),
                k.lease_prefix().as_bytes(),
                b"1000",
                most.as_bytes(),
                k.mark_prefix().as_bytes(),
            ],
        );
        got.map(|v| wire::claimed(&v)).unwrap_or_default()
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

    /// Consumer `n`, named `host/n` in the group: takes entries, runs them
    /// one after another, replies. Before it runs one of several it holds it
    /// marks it, a write it does not wait for, so that if this host dies
    /// only that entry is charged for the death ([`wire::RECLAIM`]); one it
    /// holds alone needs no mark (with none, all a consumer held is
    /// charged), once the last mark is deleted, with the read that took
    /// it: an `apply` costs Redis no command more than its read and reply. Fresh entries of short
    /// tasks are taken several at a time ([`Prefetch`]), their replies sent
    /// together in one round trip with the next read. Every quarter lease,
    /// holding nothing, it takes what dead hosts held.
    fn consume(&self, n: usize, driver: &Driver, live: &Live) {
        let me = format!("{}/{n}", self.host);
        let mark = Mark {
            key: self.keys.mark(&me),
            ttl_ms: (self.config.lease * 10).as_millis() as u64,
        };
        let mut conn = Conn::lazy(&self.endpoint, self.config.lease.max(Duration::from_secs(5)));
        let tasks = self.keys.tasks();
        let script = Script::new(wire::RECLAIM);
        let every = (self.config.lease / 4).max(Duration::from_millis(10));
        let mut next_reclaim = Instant::now();
        let mut prefetch = Prefetch::default();
        // Replies not sent yet.
        let mut replies: Vec<Reply> = Vec::new();
        // The mark may name an entry: it is deleted before a lone one runs.
        let mut marked = false;
        while !live.leaving.load(Ordering::Acquire) {
            // Takes nothing while the lease may have lapsed: what it took
            // could be another host's before it ran it.
            let seen = live.lapses.load(Ordering::Acquire);
            if !live.still_own(seen) {
                continue;
            }
            let mut held = Vec::new();
            if Instant::now() >= next_reclaim {
                self.flush(&mut conn, &me, &mut replies, (&mark, &mut marked));
                held = self.reclaim(&mut conn, &script, &me);
                // Found some: there may be more.
                next_reclaim = Instant::now() + if held.is_empty() { every } else { Duration::ZERO };
            }
            if held.is_empty() {
                let mut pipe = Pipe::new();
                if !replies.is_empty() {
                    pipe.add_command(self.send_replies(&me, &replies)).ignore();
                    replies.clear();
                }
                if marked {
                    pipe.cmd("DEL").arg(&mark.key).ignore();
                }
                pipe.cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&me)
                    .arg("COUNT")
                    .arg(prefetch.count())
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&tasks)
                    .arg(">");
                let read: redis::RedisResult<Vec<Value>> = conn.pipe(&pipe);
                marked &= read.is_err();
                match read.map(|v| v.first().map(wire::read_reply).unwrap_or_default()) {
                    Ok(entries) if !entries.is_empty() => held = entries.into_iter().map(|e| (e, 1)).collect(),
                    Ok(_) => continue,
                    Err(_) => {
                        // No group: the pool is gone (or Redis lost it).
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
            let started = Instant::now();
            let mut ran = 0;
            let alone = held.len() == 1 && !marked;
            for (e, deliveries) in &held {
                // Leaving: what is not run stays pending, uncharged, for others.
                if live.leaving.load(Ordering::Acquire) {
                    break;
                }
                // The lease lapsed since it took these: those another host
                // took meanwhile are its to run; those still pending here
                // come back by the next reclaim.
                if !live.still_own(seen) {
                    next_reclaim = Instant::now();
                    break;
                }
                let mark = if alone {
                    None
                } else {
                    marked = true;
                    Some(&mark)
                };
                replies.extend(self.serve_entry(driver, &mut conn, e, *deliveries, mark));
                ran += 1;
                if driver.lock().unusable().is_some() {
                    live.leaving.store(true, Ordering::Release);
                }
            }
            prefetch.observe(ran, started.elapsed());
        }
        self.flush(&mut conn, &me, &mut replies, (&mark, &mut marked));
    }

    /// Sends the replies not sent yet, and deletes the mark if there is one.
    fn flush(&self, conn: &mut Conn, consumer: &str, replies: &mut Vec<Reply>, (mark, marked): (&Mark, &mut bool)) {
        if replies.is_empty() && !*marked {
            return;
        }
        let mut pipe = Pipe::new();
        if !replies.is_empty() {
            pipe.add_command(self.send_replies(consumer, replies)).ignore();
            replies.clear();
        }
        if *marked {
            pipe.cmd("DEL").arg(&mark.key).ignore();
        }
        *marked &= conn.pipe::<()>(&pipe).is_err();
    }

    /// Runs one entry (or splits or quarantines it); its reply, if it has one.
    /// `mark`: where to mark it first, if it is not held alone.
    fn serve_entry(&self, driver: &Driver, conn: &mut Conn, e: &Entry, deliveries: u32, mark: Option<&Mark>) -> Option<Reply> {
        let k = &self.keys;
        let (tag, first) = (e.number::<u64>("t"), e.number::<u32>("o"));
        let prior = e.number::<u32>("a").unwrap_or(0);
        let payload = e.field("f").unwrap_or_default();
        let (Some(tag), Some(first), Ok(Message::Run { count, .. })) = (tag, first, Message::parse(payload)) else {
            self.drop_malformed(conn, e);
            return None;
        };
        let delivered = prior.saturating_add(deliveries);
        if count == 1 && delivered > self.config.max_deliveries.max(1) {
            let why = format!(
                "its batch was delivered {delivered} times, to hosts that died or went silent \
                 holding it (the pool allows {}); it is in the dead-letter stream {}",
                self.config.max_deliveries,
                k.dead()
            );
            self.dead_letter(conn, e, &why);
            let error = Error::new(ErrorKind::Quarantined(why));
            let mut out = Vec::new();
            outcome::write_error(&mut out, &error, &mut false);
            return Some(Reply::new(e, (tag, first, count), 0, out));
        }
        if deliveries > 1 && count > 1 {
            // A host died running this batch: its items go on alone, so that
            // one that kills hosts is found out and the rest are not held
            // back. No item is to blame for that death: each starts afresh.
            self.split(conn, e, (tag, first, 0), payload);
            return None;
        }
        if let Some(mark) = mark {
            conn.send(cmd("SET").arg(&mark.key).arg(&e.id).arg("PX").arg(mark.ttl_ms));
        }
        let r = match local::run(driver, &[(payload, None)]) {
            Ok(mut ran) => ran.pop()?,
            Err(local::Unrun::Malformed) => {
                self.drop_malformed(conn, e);
                return None;
            }
            // The local pool broke: the entry stays pending, for others.
            Err(local::Unrun::Broken) => return None,
        };
        if r.quarantined {
            self.dead_letter(conn, e, "an input of this batch killed its workers");
        }
        Some(Reply::new(e, (tag, first, count), r.nanos, r.outcomes))
    }

    /// The command that sends `replies`, for consumer `consumer`.
    fn send_replies(&self, consumer: &str, replies: &[Reply]) -> redis::Cmd {
        let k = &self.keys;
        // EVAL, not EVALSHA: it goes in a pipeline, where a restarted
        // Redis's NOSCRIPT could not be retried; Redis caches it compiled.
        let mut c = cmd("EVAL");
        c.arg(wire::REPLY).arg(3).arg(k.tasks()).arg(k.replies()).arg(k.hello());
        c.arg(GROUP).arg(consumer).arg(&self.host);
        for r in replies {
            c.arg(&r.id).arg(r.tag).arg(r.nanos).arg(r.first).arg(r.count).arg(&r.outcomes);
        }
        c
    }

    /// Lets an entry whose batch is malformed go, to the dead-letter stream:
    /// not a batch a driver wrote, so no outcome of it can be true.
    fn drop_malformed(&self, conn: &mut Conn, e: &Entry) {
        let k = &self.keys;
        self.dead_letter(conn, e, "a malformed batch: its inputs are not what its header says");
        let _ = conn.run::<()>(cmd("XACK").arg(k.tasks()).arg(GROUP).arg(&e.id));
        let _ = conn.run::<()>(cmd("XDEL").arg(k.tasks()).arg(&e.id));
    }

    /// Adds the entry to the dead-letter stream, with why.
    fn dead_letter(&self, conn: &mut Conn, e: &Entry, why: &str) {
        let mut c = cmd("XADD");
        c.arg(self.keys.dead()).arg("*");
        for (name, value) in &e.fields {
            c.arg(name).arg(value);
        }
        c.arg("why").arg(why).arg("host").arg(&self.host);
        let _ = conn.run::<Value>(&c);
    }

    /// Puts each item of the entry back on its own, then lets the entry go.
    fn split(&self, conn: &mut Conn, e: &Entry, (tag, first, attempts): (u64, u32, u32), payload: &[u8]) {
        let k = &self.keys;
        let Some(items) = local::batch_items(payload) else {
            self.drop_malformed(conn, e);
            return;
        };
        let mut pipe = Pipe::new();
        for (i, one) in items.into_iter().enumerate() {
            pipe.cmd("XADD")
                .arg(k.tasks())
                .arg("*")
                .arg("t")
                .arg(tag)
                .arg("o")
                .arg(first + i as u32)
                .arg("a")
                .arg(attempts)
                .arg("f")
                .arg(one)
                .ignore();
        }
        pipe.cmd("XACK").arg(k.tasks()).arg(GROUP).arg(&e.id).ignore();
        pipe.cmd("XDEL").arg(k.tasks()).arg(&e.id).ignore();
        let _ = conn.retrying_pipe(&pipe);
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

/// How many fresh entries a consumer takes at once: as many as it runs in
/// about [`Prefetch::HOLD`], one while it has not run any. A host thus
/// holds little work another host could have run (none beyond one entry
/// per worker when tasks are long), and short tasks cost a round trip to
/// Redis per group instead of per entry.
#[derive(Debug, Default)]
struct Prefetch {
    /// Wall time per entry, smoothed.
    per_entry: Option<Duration>,
}

impl Prefetch {
    const HOLD: Duration = Duration::from_millis(2);
    const MAX: usize = 64;

    fn count(&self) -> usize {
        self.per_entry.map_or(1, |d| {
            let n = Self::HOLD.as_nanos() / d.as_nanos().max(1);
            (n as usize).clamp(1, Self::MAX)
        })
    }

    fn observe(&mut self, entries: usize, took: Duration) {
        let one = took / entries.max(1) as u32;
        self.per_entry = Some(self.per_entry.map_or(one, |p| (p * 3 + one) / 4));
    }
}

/// An entry's reply: the outcomes of `count` items from `first` of batch
/// `tag`, computed in `nanos`.
struct Reply {
    id: String,
    tag: u64,
    nanos: u64,
    first: u32,
    count: u32,
    outcomes: Vec<u8>,
}

impl Reply {
    fn new(e: &Entry, (tag, first, count): (u64, u32, u32), nanos: u64, outcomes: Vec<u8>) -> Reply {
        Reply {
            id: e.id.clone(),
            tag,
            nanos,
            first,
            count,
            outcomes,
        }
    }
}
