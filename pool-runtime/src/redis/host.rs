//! A host: the user's own program, started in worker mode with a Redis URL
//! in [`HOST_ENV`]. It looks for live pools in the registry, refuses those
//! whose code is not its own (and says why, where the driver reads it), and
//! serves each other one with a local pool of this crate's own: a fork
//! server and forked workers, each building its state once from the
//! driver's init arguments, fed from the pool's task stream instead of a
//! driver's channels. A worker that dies on a live host is this host's
//! business, handled at once as in any local pool; only a host's death
//! needs Redis, through its lease.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{cmd, Client, Script, Value};

use super::conn::Conn;
use super::keys::{self, Keys, GROUP};
use super::wire::{self, Entry, HostConfig};
use crate::channel::message::{self, Message};
use crate::channel::outcome;
use crate::channel::{frame, item};
use crate::driver::{Completion, Config, Driver, NewBatch};
use crate::error::{Error, ErrorKind};
use crate::sys;
use crate::transport::fork::{ForkServer, Settings};
use crate::worker::{self, Recycle};

/// The variable that makes a program a host: the Redis URL to serve from.
pub const HOST_ENV: &str = "POOL_RUNTIME_REDIS_HOST";
/// How many workers a host runs for each pool (default: one per CPU).
pub const HOST_WORKERS_ENV: &str = "POOL_RUNTIME_HOST_WORKERS";
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
    let client = match super::client(url, ca.as_deref()) {
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
    let id = host_id();
    // A host waits out Redis being away: it is there to serve.
    let mut conn = match Conn::open(&client, Duration::from_secs(3600)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "pool-runtime host: cannot connect to Redis at {}: {e}",
                super::redact(url)
            );
            return 2;
        }
    };
    let mut sessions: HashMap<String, JoinHandle<()>> = HashMap::new();
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
        sessions.retain(|_, t| !t.is_finished());
        for pool in live {
            if sessions.contains_key(&pool) || refused.contains(&pool) {
                continue;
            }
            match offer(&mut conn, &pool, &id) {
                Offer::Serve(hello, config) => {
                    let session = Session {
                        keys: Keys::new(&pool),
                        host: id.clone(),
                        client: client.clone(),
                        config,
                        workers,
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
    client: Client,
    config: HostConfig,
    workers: usize,
}

/// What a session's threads share.
struct Live {
    /// The pool is gone or ending, or this host leaves: take no more.
    leaving: AtomicBool,
    /// Entries taken from hosts whose lease lapsed, with their deliveries.
    claimed: Mutex<VecDeque<(Entry, u32)>>,
    /// The entries this host's consumers are running.
    running: Mutex<HashSet<String>>,
}

impl Session {
    fn run(self, hello: Vec<u8>) {
        let driver = match self.local_pool(&hello) {
            Ok(d) => d,
            Err(why) => {
                let mut conn = Conn::lazy(&self.client, Duration::from_secs(5));
                refuse(&mut conn, &self.keys, &self.host, &format!("init failed: {why}"));
                return;
            }
        };
        drop(hello);
        let driver = Arc::new(driver);
        let live = Arc::new(Live {
            leaving: AtomicBool::new(false),
            claimed: Mutex::new(VecDeque::new()),
            running: Mutex::new(HashSet::new()),
        });
        let me = Arc::new(self);
        // The first heartbeat registers this host: only then does it take work.
        let mut beat = Conn::lazy(&me.client, me.config.lease);
        if me.heartbeat(&mut beat, &live) == 0 {
            driver.shutdown(None);
            return;
        }
        // One entry held per worker: a host that dies held only what its
        // workers ran, so each entry's delivery count blames what it should.
        let consumers: Vec<JoinHandle<()>> = (0..me.workers)
            .map(|_| {
                let (me, live, driver) = (me.clone(), live.clone(), driver.clone());
                std::thread::Builder::new()
                    .name("pool-redis-consumer".into())
                    .spawn(move || me.consume(&driver, &live))
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
        let reclaim = Script::new(wire::RECLAIM);
        let every = (me.config.lease / 4).max(Duration::from_millis(10));
        let mut closing = None;
        while consumers.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(every);
            match me.heartbeat(&mut beat, &live) {
                0 => live.leaving.store(true, Ordering::Release),
                3 => {
                    closing = closing.or_else(|| me.closing_hook(&mut beat));
                    live.leaving.store(true, Ordering::Release);
                }
                _ => {}
            }
            if sys::leave_asked() {
                live.leaving.store(true, Ordering::Release);
            }
            if !live.leaving.load(Ordering::Acquire) {
                me.reclaim(&mut beat, &reclaim, &live);
            }
        }
        for t in consumers.into_iter().chain([inbox]) {
            let _ = t.join();
        }
        // What was claimed and not run goes back to the others.
        let hook = closing.flatten().or(me.config.exit_hook);
        if let Some(hook) = hook {
            me.run_exit_hooks(&driver, hook, &mut beat);
        }
        let k = &me.keys;
        let _ = beat.script::<Value>(
            &Script::new(wire::LEAVE),
            &[&k.tasks(), &k.lease(&me.host), &k.hosts()],
            &[GROUP.as_bytes(), me.host.as_bytes()],
        );
        driver.shutdown(None);
    }

    /// The local pool: a fork server and `workers` workers, each building
    /// its state from the driver's greeting.
    fn local_pool(&self, hello: &[u8]) -> Result<Driver, String> {
        let c = &self.config;
        let recycle = Recycle {
            max_tasks: c.max_tasks,
            max_rss: None,
            exit_hook: None,
        };
        let settings = Settings {
            workers: self.workers,
            max_frame: c.max_frame,
            recycle: &recycle,
        };
        let sleep = crate::driver::sleep::Sleep::new().map_err(|e| e.to_string())?;
        let transport = ForkServer::start_with(settings, &|start| {
            worker::live(start, |info, _| worker::state_from_hello(hello, info))
        })
        .map_err(|e| e.to_string())?;
        let config = Config {
            workers: self.workers,
            max_frame: c.max_frame,
            chunk_size: None,
            shutdown_grace: Duration::from_secs(2),
            respawn_limit: c.respawn_limit,
            retries: c.retries,
            task_timeout: c.task_timeout,
            init_timeout: c.init_timeout,
            recycle: recycle.clone(),
        };
        let driver = Driver::new(Box::new(transport), sleep, config);
        match driver.start_workers() {
            Ok(()) => Ok(driver),
            Err(why) => {
                driver.shutdown(None);
                Err(why)
            }
        }
    }

    /// Renews the lease; see [`wire::HEARTBEAT`] for what it returns.
    fn heartbeat(&self, conn: &mut Conn, _live: &Live) -> i64 {
        let k = &self.keys;
        let lease = self.config.lease.as_millis().to_string();
        let what = format!("{} workers, pid {}", self.workers, std::process::id());
        conn.script::<i64>(
            &Script::new(wire::HEARTBEAT),
            &[&k.hello(), &k.lease(&self.host), &k.hosts()],
            &[lease.as_bytes(), self.host.as_bytes(), what.as_bytes()],
        )
        // Redis out of reach is not the pool gone: try again next beat.
        .unwrap_or(-1)
    }

    /// The exit hook the driver asked for as it ends the pool, if any.
    fn closing_hook(&self, conn: &mut Conn) -> Option<Option<u32>> {
        let v: Option<String> = conn
            .run(cmd("HGET").arg(self.keys.hello()).arg("closing"))
            .ok()?;
        // `-`: the driver ends the pool without an exit hook.
        Some(v.and_then(|v| v.parse::<u32>().ok()))
    }

    /// Takes the entries of hosts whose lease lapsed.
    fn reclaim(&self, conn: &mut Conn, script: &Script, live: &Live) {
        let k = &self.keys;
        let got: redis::RedisResult<Value> = conn.script(
            script,
            &[&k.tasks(), &k.hello()],
            &[
                GROUP.as_bytes(),
                self.host.as_bytes(),
                k.lease_prefix().as_bytes(),
                b"1000",
            ],
        );
        if let Ok(v) = got {
            live.claimed.lock().unwrap().extend(wire::claimed(&v));
        }
        self.reclaim_own(conn, live);
    }

    /// Takes back this host's own pending entries that no consumer runs:
    /// delivered by a read whose answer a cut connection lost (Redis moved
    /// the entry to this host, which never saw it). Idle for two leases
    /// first, so that an entry being read right now is not one of them.
    fn reclaim_own(&self, conn: &mut Conn, live: &Live) {
        let k = &self.keys;
        let idle = (self.config.lease * 2).as_millis() as u64;
        let pending: redis::RedisResult<Vec<(String, String, u64, u32)>> = conn.run(
            cmd("XPENDING")
                .arg(k.tasks())
                .arg(GROUP)
                .arg("IDLE")
                .arg(idle)
                .arg("-")
                .arg("+")
                .arg(100)
                .arg(&self.host),
        );
        let Ok(pending) = pending else { return };
        let orphans: Vec<String> = {
            let running = live.running.lock().unwrap();
            let claimed = live.claimed.lock().unwrap();
            pending
                .into_iter()
                .map(|(id, ..)| id)
                .filter(|id| !running.contains(id) && !claimed.iter().any(|(e, _)| e.id == *id))
                .collect()
        };
        if orphans.is_empty() {
            return;
        }
        let got: redis::RedisResult<Value> = conn.run(
            cmd("XCLAIM")
                .arg(k.tasks())
                .arg(GROUP)
                .arg(&self.host)
                .arg(idle)
                .arg(&orphans),
        );
        if let Ok(Value::Array(entries)) = got {
            // Its deliveries so far: this host never ran it.
            let found = entries.iter().filter_map(wire::entry).map(|e| (e, 1));
            live.claimed.lock().unwrap().extend(found);
        }
    }

    /// Runs each broadcast sent to this host on every one of its workers,
    /// and sends their outcomes, in worker order, as one reply.
    fn serve_inbox(&self, driver: &Driver, live: &Live) {
        let k = &self.keys;
        let inbox = k.inbox(&self.host);
        let mut conn = Conn::lazy(&self.client, self.config.lease.max(Duration::from_secs(5)));
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
                let Ok(Message::Run { task, count: 1, body, .. }) = Message::parse(payload) else {
                    continue;
                };
                let slots: Vec<Option<usize>> = {
                    let core = driver.wait_until(|core| core.all_settled());
                    core.ready_slots().into_iter().map(Some).collect()
                };
                let Some((outcomes, _, _)) = self.run_local(driver, payload, (task, 1, body), &slots) else {
                    continue;
                };
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

    /// A consumer: takes entries (claimed ones first), runs each, replies.
    fn consume(&self, driver: &Driver, live: &Live) {
        let mut conn = Conn::lazy(&self.client, self.config.lease.max(Duration::from_secs(5)));
        let tasks = self.keys.tasks();
        // The reply to the last entry goes in one round trip with the read
        // of the next.
        let mut reply: Option<redis::Cmd> = None;
        // The entry whose reply is `reply`.
        let mut answered: Option<String> = None;
        while !live.leaving.load(Ordering::Acquire) {
            let next = live.claimed.lock().unwrap().pop_front();
            let (entry, deliveries) = match next {
                Some(claimed) => {
                    if let Some(r) = reply.take() {
                        let _ = conn.run::<Value>(&r);
                    }
                    claimed
                }
                None => {
                    let mut pipe = redis::pipe();
                    if let Some(r) = reply.take() {
                        pipe.add_command(r).ignore();
                    }
                    pipe.cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(&self.host)
                        .arg("COUNT")
                        .arg(1)
                        .arg("BLOCK")
                        .arg(100)
                        .arg("STREAMS")
                        .arg(&tasks)
                        .arg(">");
                    let read: redis::RedisResult<Vec<Value>> = conn.pipe(&pipe);
                    match read.map(|v| v.first().map(wire::read_reply).unwrap_or_default()) {
                        Ok(mut entries) if !entries.is_empty() => (entries.swap_remove(0), 1),
                        Ok(_) => continue,
                        Err(_) => {
                            // No group: the pool is gone (or Redis lost it).
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    }
                }
            };
            // Running until its reply is sent (with the next read).
            live.running.lock().unwrap().insert(entry.id.clone());
            reply = self.serve_entry(driver, &mut conn, &entry, deliveries);
            if let Some(done) = answered.replace(entry.id) {
                live.running.lock().unwrap().remove(&done);
            }
            if driver.lock().unusable().is_some() {
                live.leaving.store(true, Ordering::Release);
            }
        }
        if let Some(r) = reply {
            let _ = conn.run::<Value>(&r);
        }
    }

    /// Runs one entry (or splits or quarantines it); the command that
    /// sends its reply, if it has one.
    fn serve_entry(&self, driver: &Driver, conn: &mut Conn, e: &Entry, deliveries: u32) -> Option<redis::Cmd> {
        let k = &self.keys;
        let (tag, first) = (e.number::<u64>("t"), e.number::<u32>("o"));
        let prior = e.number::<u32>("a").unwrap_or(0);
        let payload = e.field("f").unwrap_or_default();
        let (Some(tag), Some(first), Ok(Message::Run { task, count, body, .. })) =
            (tag, first, Message::parse(payload))
        else {
            // Not a batch of ours: nothing can answer it.
            let _ = conn.run::<()>(cmd("XACK").arg(k.tasks()).arg(GROUP).arg(&e.id));
            let _ = conn.run::<()>(cmd("XDEL").arg(k.tasks()).arg(&e.id));
            return None;
        };
        let delivered = prior.saturating_add(deliveries);
        let mut compute = 0;
        let outcomes = if count == 1 && delivered > self.config.max_deliveries.max(1) {
            let why = format!(
                "its batch was delivered {delivered} times, to hosts that died or went silent \
                 holding it (the pool allows {}); it is in the dead-letter stream {}",
                self.config.max_deliveries,
                k.dead()
            );
            self.dead_letter(conn, e, &why);
            let error = Error::new(ErrorKind::Quarantined(why));
            let mut out = Vec::new();
            for _ in 0..count {
                outcome::write_error(&mut out, &error, &mut false);
            }
            out
        } else if deliveries > 1 && count > 1 {
            // A host died holding this batch: its items go on alone, so that
            // one that kills hosts is found out and the rest are not held
            // back. No item is to blame for that death: each starts afresh.
            self.split(conn, e, (tag, first, 0), payload);
            return None;
        } else {
            match self.run_local(driver, payload, (task, count, body), &[None]) {
                Some((out, quarantined, nanos)) => {
                    compute = nanos;
                    if quarantined {
                        self.dead_letter(conn, e, "an input of this batch killed its workers");
                    }
                    out
                }
                None => return None,
            }
        };
        let fields: [(&str, Vec<u8>); 6] = [
            ("t", tag.to_string().into_bytes()),
            ("ns", compute.to_string().into_bytes()),
            ("o", first.to_string().into_bytes()),
            ("n", count.to_string().into_bytes()),
            ("h", self.host.clone().into_bytes()),
            ("b", outcomes),
        ];
        // EVAL, not EVALSHA: it goes in a pipeline, where a restarted
        // Redis's NOSCRIPT could not be retried; Redis caches it compiled.
        let mut c = cmd("EVAL");
        c.arg(wire::REPLY).arg(3).arg(k.tasks()).arg(k.replies()).arg(k.hello());
        c.arg(GROUP).arg(&self.host).arg(&e.id).arg(0);
        for (name, value) in &fields {
            c.arg(*name).arg(value);
        }
        Some(c)
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
        let Some(items) = batch_items(payload) else {
            return;
        };
        let mut pipe = redis::pipe();
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

    /// Runs a batch on the local pool, once per entry of `copies` (pinned
    /// to that slot, or on any worker); its outcomes back to back, and
    /// whether one of them is a quarantine. `None`: the local pool broke
    /// before it could say.
    fn run_local(
        &self,
        driver: &Driver,
        payload: &[u8],
        (task, count, body): (u32, u32, &[u8]),
        copies: &[Option<usize>],
    ) -> Option<(Vec<u8>, bool, u64)> {
        let mut framed = Vec::with_capacity(payload.len() + frame::PREFIX);
        let start = frame::begin(&mut framed);
        framed.extend_from_slice(payload);
        frame::finish(&mut framed, start, usize::MAX).ok()?;
        // Where the inputs start: after the header (and the chain).
        let inputs = if task == message::CHAIN {
            message::parse_chain(body).ok()?.1
        } else {
            body
        };
        let mut at = frame::PREFIX + payload.len() - inputs.len();
        let mut offsets = Vec::with_capacity(count as usize);
        let mut rest = inputs;
        for _ in 0..count {
            offsets.push(at as u32);
            let (_, _, next) = item::read(rest).ok()?;
            at += rest.len() - next.len();
            rest = next;
        }
        let total = count as usize * copies.len();
        let mut outcomes: Vec<Option<Vec<u8>>> = vec![None; total];
        let mut quarantined = false;
        let mut compute = 0u64;
        let job = {
            let mut core = driver.lock();
            let job = core.new_job();
            for (i, &slot) in copies.iter().enumerate() {
                let batch = NewBatch {
                    job,
                    task,
                    first: (i * count as usize) as u64,
                    count,
                    frame: framed.clone(),
                    offsets: offsets.clone(),
                    attempts: 0,
                    strays: 0,
                };
                core.submit(batch, slot);
            }
            core.dispatch();
            driver.nudge(&core);
            job
        };
        let mut left = total;
        let mut got = VecDeque::new();
        while left > 0 {
            let mut core = driver.wait_until(|core| core.has_completions(job));
            core.take_completions(job, &mut got);
            drop(core);
            for c in got.drain(..) {
                match c {
                    Completion::Items {
                        first,
                        count,
                        nanos,
                        frame,
                        body,
                    } => {
                        compute += nanos;
                        let mut rest = frame.get(body..)?;
                        for i in 0..count as u64 {
                            let (_, _, next) = item::read(rest).ok()?;
                            let slot = outcomes.get_mut((first + i) as usize)?;
                            if slot.is_none() {
                                left -= 1;
                            }
                            *slot = Some(rest[..rest.len() - next.len()].to_vec());
                            rest = next;
                        }
                    }
                    Completion::Failed { index, error } => {
                        quarantined |= matches!(error.kind(), ErrorKind::Quarantined(_));
                        let mut one = Vec::new();
                        outcome::write_error(&mut one, &error, &mut false);
                        let slot = outcomes.get_mut(index as usize)?;
                        if slot.is_none() {
                            left -= 1;
                        }
                        *slot = Some(one);
                    }
                }
            }
        }
        driver.lock().abandon(job);
        Some((outcomes.into_iter().flatten().flatten().collect(), quarantined, compute))
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

/// Each item of a `Run` payload as a `Run` payload of its own.
fn batch_items(payload: &[u8]) -> Option<Vec<Vec<u8>>> {
    let Ok(Message::Run { tag, task, count, body }) = Message::parse(payload) else {
        return None;
    };
    let (chain, inputs) = if task == message::CHAIN {
        let (_, inputs) = message::parse_chain(body).ok()?;
        (&body[..body.len() - inputs.len()], inputs)
    } else {
        (&body[..0], body)
    };
    let mut out = Vec::with_capacity(count as usize);
    let mut rest = inputs;
    for _ in 0..count {
        let (_, _, next) = item::read(rest).ok()?;
        let mut one = Vec::new();
        let start = message::write::run(&mut one, tag, task, 1);
        one.extend_from_slice(chain);
        one.extend_from_slice(&rest[..rest.len() - next.len()]);
        // The payload is the frame without its length prefix.
        one.drain(start..start + frame::PREFIX);
        out.push(one);
        rest = next;
    }
    Some(out)
}
