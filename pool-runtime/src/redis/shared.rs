//! What a Redis pool's driver knows, shared by its relays, its reply
//! reader and its keeper: the batches pending, each item's outcome once
//! one came, and the operations on the pool's keys they share.
//!
//! It owns the truth of what is done: a batch is pending until every one
//! of its items has an outcome, and an outcome for an item that has one
//! already (a batch run twice: a host thought dead came back) is dropped
//! and counted. Execution is at least once; each input gets exactly one
//! outcome.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{cmd, Value};

use super::conn::{Conn, Endpoint, Pipe};
use super::depth::Depth;
use super::keys::{self, Keys, GROUP};
use super::wire::{self, Entry};
use crate::channel::message::write;
use crate::channel::outcome::{self, Status};
use crate::channel::{frame, item};


/// A host's reply to a broadcast: the host, its workers' outcome items.
type HostItems = (String, Vec<Vec<u8>>);

/// What the relays share.
pub(crate) struct Shared {
    pub(crate) keys: Keys,
    pub(crate) endpoint: Endpoint,
    /// How long a command keeps trying to reach Redis.
    pub(crate) patience: Duration,
    pub(crate) max_frame: usize,
    /// The expiry of the pool's keys, refreshed while the driver lives.
    pub(crate) key_ttl: Duration,
    /// The hash fields `hello` and `config`, to write again if Redis lost them.
    pub(crate) hello: Vec<u8>,
    pub(crate) config: String,
    stop: AtomicBool,
    /// Redis could not be reached for longer than `patience`.
    lost: Mutex<Option<String>>,
    state: Mutex<State>,
    /// Outcomes dropped because their input had one already.
    pub(crate) duplicates: AtomicU64,
    /// Reads of the reply stream so far.
    reads: AtomicU64,
    /// A host's lease, as the builder set it.
    pub(crate) lease: Duration,
    /// How long batches wait while no host serves the pool.
    host_wait: Duration,
    /// Why batches fail at once: no host has served the pool for
    /// `host_wait`, and none came since.
    hostless: Mutex<Option<String>>,
    /// Exit-hook outcomes of hosts' workers: (host, outcome).
    exits: Mutex<Vec<(String, Vec<u8>)>>,
    /// Broadcasts under way, by id: each host's reply, (host, outcomes).
    broadcasts: Mutex<HashMap<u64, Vec<HostItems>>>,
    next_broadcast: AtomicU64,
    /// How many batches each relay may hold.
    pub(super) depth: Depth,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("pool", &self.keys.id)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Batches sent and not yet answered whole, by tag.
    pending: HashMap<u64, Pending>,
    /// Each slot's end of its channel, for writing what its worker would.
    writers: HashMap<usize, Arc<UnixStream>>,
}

struct Pending {
    slot: usize,
    /// Each item's outcome, once one came.
    outcomes: Vec<Option<Vec<u8>>>,
    filled: u32,
    /// Time the hosts' workers spent on its items (what the chunker sizes
    /// batches by: not the time in Redis).
    nanos: u64,
    /// Its entry in the task stream, once added.
    entry: Option<String>,
    /// Since when its entry is gone with outcomes missing.
    missing_since: Option<Instant>,
    /// The `Run` message (no prefix), to send again if Redis loses it.
    payload: Arc<Vec<u8>>,
}

impl Shared {
    pub(crate) fn new(
        keys: Keys,
        endpoint: Endpoint,
        (patience, key_ttl, max_frame, lease, host_wait): (Duration, Duration, usize, Duration, Duration),
        (hello, config): (Vec<u8>, String),
        relays: usize,
    ) -> Shared {
        Shared {
            keys,
            endpoint,
            patience,
            max_frame,
            key_ttl,
            hello,
            config,
            stop: AtomicBool::new(false),
            lost: Mutex::new(None),
            state: Mutex::new(State::default()),
            duplicates: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            lease,
            host_wait,
            hostless: Mutex::new(None),
            exits: Mutex::new(Vec::new()),
            broadcasts: Mutex::new(HashMap::new()),
            next_broadcast: AtomicU64::new(1),
            depth: Depth::new(relays),
        }
    }

    /// Writes the pool's hello and its task stream's group: at build, and
    /// again if Redis restarted without its data.
    pub(crate) fn publish(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let k = &self.keys;
        conn.run::<()>(
            cmd("HSET")
                .arg(k.hello())
                .arg("hello")
                .arg(&self.hello)
                .arg("config")
                .arg(&self.config),
        )?;
        let created: redis::RedisResult<()> = conn.run(
            cmd("XGROUP")
                .arg("CREATE")
                .arg(k.tasks())
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM"),
        );
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            other => other?,
        }
        self.refresh(conn)
    }

    /// Pushes the expiry of the pool's keys on, and vouches for the pool in
    /// the registry.
    pub(super) fn refresh(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let ttl = self.key_ttl.as_millis() as u64;
        let mut pipe = Pipe::new();
        for key in self.keys.owned() {
            pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
        }
        let now = wire::now_ms();
        pipe.cmd("ZADD")
            .arg(keys::registry())
            .arg(now + ttl)
            .arg(&self.keys.id)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(keys::registry())
            .arg("-inf")
            .arg(now)
            .ignore();
        conn.retrying_pipe(&pipe)
    }

    /// Adds batch `payload` (items `first ..` of batch `tag`) to the task stream.
    pub(super) fn add_task(&self, conn: &mut Conn, tag: u64, payload: &[u8]) -> redis::RedisResult<()> {
        self.add_tasks(conn, &[(tag, payload)])
    }

    /// Adds each batch `(tag, payload)` to the task stream, in one round trip.
    pub(super) fn add_tasks(&self, conn: &mut Conn, batches: &[(u64, &[u8])]) -> redis::RedisResult<()> {
        let mut pipe = Pipe::new();
        for (tag, payload) in batches {
            pipe.cmd("XADD")
                .arg(self.keys.tasks())
                .arg("*")
                .arg("t")
                .arg(tag)
                .arg("o")
                .arg(0)
                .arg("a")
                .arg(0)
                .arg("f")
                .arg(payload);
        }
        let ids: Vec<String> = conn.pipe(&pipe)?;
        let mut state = self.state.lock().unwrap();
        for ((tag, _), id) in batches.iter().zip(ids) {
            if let Some(p) = state.pending.get_mut(tag) {
                p.entry = Some(id);
                p.missing_since = None;
            }
        }
        Ok(())
    }

    /// Batches whose entry is gone from the task stream (trimmed, or lost
    /// with Redis's data) and whose outcomes have not come for a while go
    /// again. A split batch's entry is gone too, its items in entries of
    /// their own: its wait is long enough for those to have answered.
    pub(super) fn resend_lost(&self, conn: &mut Conn) {
        let known: Vec<(u64, String)> = {
            let state = self.state.lock().unwrap();
            let mut v: Vec<_> = state
                .pending
                .iter()
                .filter_map(|(t, p)| Some((*t, p.entry.clone()?)))
                .collect();
            v.truncate(4096);
            v
        };
        if known.is_empty() {
            return;
        }
        let mut pipe = Pipe::new();
        for (_, id) in &known {
            pipe.cmd("XRANGE").arg(self.keys.tasks()).arg(id).arg(id);
        }
        let Ok(found) = conn.pipe::<Vec<Value>>(&pipe) else {
            return;
        };
        let patience = self.lease * 2 + Duration::from_secs(1);
        let mut resend = Vec::new();
        {
            let mut state = self.state.lock().unwrap();
            for ((tag, _), v) in known.iter().zip(&found) {
                let Some(p) = state.pending.get_mut(tag) else { continue };
                let gone = matches!(v, Value::Array(a) if a.is_empty());
                match (gone, p.missing_since) {
                    (false, _) => p.missing_since = None,
                    (true, None) => p.missing_since = Some(Instant::now()),
                    (true, Some(since)) if since.elapsed() > patience => {
                        resend.push((*tag, p.payload.clone()));
                    }
                    _ => {}
                }
            }
        }
        for (tag, payload) in resend {
            let _ = self.add_task(conn, tag, &payload);
        }
    }

    /// Fails every batch pending once no host has served the pool for
    /// `host_wait` (those it had died or left): no outcome would come.
    /// Their entries go too, so that a host joining later does not run
    /// inputs whose outcome is given. `since`: since when no host served it.
    /// From then on, until a host comes, batches fail as they are sent
    /// ([`Shared::hostless`]): a lazy `imap` does not wait `host_wait` per
    /// window. `live`: how many hosts serve it, as just read.
    pub(super) fn fail_without_hosts(&self, conn: &mut Conn, live: redis::RedisResult<usize>, since: &mut Option<Instant>) {
        if self.state.lock().unwrap().pending.is_empty() {
            *since = None;
            return;
        }
        match live {
            Ok(0) => {}
            Ok(_) => {
                *since = None;
                return;
            }
            Err(_) => return,
        }
        if since.get_or_insert_with(Instant::now).elapsed() < self.host_wait {
            return;
        }
        let pending: Vec<(u64, Option<String>)> = {
            let state = self.state.lock().unwrap();
            state.pending.iter().map(|(t, p)| (*t, p.entry.clone())).collect()
        };
        let ids: Vec<&String> = pending.iter().filter_map(|(_, id)| id.as_ref()).collect();
        if !ids.is_empty() {
            let mut pipe = Pipe::new();
            pipe.cmd("XACK").arg(self.keys.tasks()).arg(GROUP).arg(&ids).ignore();
            pipe.cmd("XDEL").arg(self.keys.tasks()).arg(&ids).ignore();
            let _ = conn.pipe::<()>(&pipe);
        }
        let why = format!(
            "no host has served the pool for {:?} (its host_wait): the hosts it had died or left",
            self.host_wait
        );
        *self.hostless.lock().unwrap() = Some(why.clone());
        for (tag, _) in pending {
            self.fail_batch(tag, &why);
        }
    }

    /// Why batches sent now are to fail at once, if they are: no host has
    /// served the pool for `host_wait`, and none has come since (checked
    /// now, so a host that just came is not missed).
    pub(super) fn hostless(&self, conn: &mut Conn) -> Option<String> {
        let why = self.hostless.lock().unwrap().clone()?;
        match self.live_hosts(conn) {
            Ok(0) => Some(why),
            Ok(_) => {
                *self.hostless.lock().unwrap() = None;
                None
            }
            // Redis out of reach: the usual path says so.
            Err(_) => None,
        }
    }

    /// Takes one reply (a host's group of them, a broadcast's, an exit
    /// hook's, a count of late ones): fills in the outcomes it brings that
    /// were missing, and hands each relay its `Done` once its batch is whole.
    pub(super) fn take_reply(&self, e: &Entry) {
        if e.field("k") == Some(b"b") {
            let (Some(id), Some(n)) = (e.number::<u64>("t"), e.number::<u32>("n")) else {
                return;
            };
            let host = String::from_utf8_lossy(e.field("h").unwrap_or_default()).into_owned();
            let why = || {
                let mut one = Vec::new();
                let text = format!("a malformed broadcast reply from host {host}");
                outcome::write_message(&mut one, Status::Codec, &text, &mut false);
                vec![one]
            };
            let items = split_items(e.field("b").unwrap_or_default(), n).unwrap_or_else(why);
            if let Some(replies) = self.broadcasts.lock().unwrap().get_mut(&id) {
                if !replies.iter().any(|(h, _)| *h == host) {
                    replies.push((host, items));
                }
            }
            return;
        }
        if e.field("k") == Some(b"l") {
            // Replies a host had for entries no longer its own: dropped.
            let n = e.number::<u64>("n").unwrap_or(0);
            self.duplicates.fetch_add(n, Ordering::Relaxed);
            return;
        }
        if e.field("k") == Some(b"x") {
            let host = String::from_utf8_lossy(e.field("h").unwrap_or_default()).into_owned();
            let body = e.field("b").unwrap_or_default().to_vec();
            self.exits.lock().unwrap().push((host, body));
            return;
        }
        let host = e.field("h").unwrap_or_default();
        if e.field("k") == Some(b"g") {
            // A malformed piece: the batches of those after it wait, as for
            // a lost reply (their entries are gone: resent after a while).
            let pieces = wire::reply_pieces(e.field("g").unwrap_or_default()).unwrap_or_else(|some| some);
            for p in pieces {
                self.fill(p, host);
            }
            return;
        }
        let (Some(tag), Some(first), Some(count)) =
            (e.number::<u64>("t"), e.number::<u32>("o"), e.number::<u32>("n"))
        else {
            return; // not a reply of ours: nothing to fill
        };
        let piece = wire::Piece {
            tag,
            nanos: e.number::<u64>("ns").unwrap_or(0),
            first,
            count,
            body: e.field("b").unwrap_or_default(),
        };
        self.fill(piece, host);
    }

    /// Fills in the outcomes `p` brings that were missing (a second one is
    /// counted), and hands the relay its `Done` once the batch is whole.
    /// `host`: who sent it.
    fn fill(&self, p: wire::Piece<'_>, host: &[u8]) {
        let wire::Piece { tag, nanos, first, count, body } = p;
        let mut state = self.state.lock().unwrap();
        let Some(p) = state.pending.get_mut(&tag) else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let total = p.outcomes.len() as u64;
        if count == 0 || u64::from(first) + u64::from(count) > total {
            return;
        }
        let items = split_items(body, count).unwrap_or_else(|| {
            let why = format!("a malformed reply from host {}", String::from_utf8_lossy(host));
            let mut one = Vec::new();
            outcome::write_message(&mut one, Status::Codec, &why, &mut false);
            vec![one; count as usize]
        });
        let mut fresh = false;
        for (i, bytes) in items.into_iter().enumerate() {
            let at = &mut p.outcomes[first as usize + i];
            if at.is_none() {
                *at = Some(bytes);
                p.filled += 1;
                fresh = true;
            }
        }
        if fresh {
            p.nanos += nanos;
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        if p.filled as usize == p.outcomes.len() {
            let p = state.pending.remove(&tag).expect("just seen");
            let writer = state.writers.get(&p.slot).cloned();
            drop(state);
            self.depth.observe(p.nanos, p.payload.len(), p.outcomes.len());
            if let Some(w) = writer {
                let _ = (&*w).write_all(&self.done_frame(tag, p));
            }
        }
    }

    /// The `Done` a worker would have sent for batch `tag`, now whole.
    fn done_frame(&self, tag: u64, p: Pending) -> Vec<u8> {
        let count = p.outcomes.len() as u32;
        let nanos = p.nanos;
        let mut out = Vec::new();
        let start = write::done(&mut out, tag, 0, 0);
        for o in p.outcomes.iter().flatten() {
            out.extend_from_slice(o);
        }
        write::patch_done(&mut out, start, 0, count, nanos);
        write::finish_tally(&mut out, start, 0, 0, &[]);
        if frame::finish(&mut out, start, self.max_frame).is_ok() {
            return out;
        }
        let why = format!(
            "the results of this batch exceed the frame limit of {} bytes",
            self.max_frame
        );
        let errors = (0..count).map(|_| error_item(Status::Codec, &why)).collect();
        self.done_frame(tag, Pending { outcomes: errors, ..p })
    }

    /// Every item of batch `tag` that has no outcome yet gets `why`.
    pub(super) fn fail_batch(&self, tag: u64, why: &str) {
        let Some(count) = self
            .state
            .lock()
            .unwrap()
            .pending
            .get(&tag)
            .map(|p| p.outcomes.len())
        else {
            return;
        };
        let error = crate::error::Error::new(crate::error::ErrorKind::PoolBroken(why.into()));
        let mut body = Vec::new();
        for _ in 0..count {
            outcome::write_error(&mut body, &error, &mut false);
        }
        let reply = Entry {
            id: String::new(),
            fields: vec![
                (b"t".to_vec(), tag.to_string().into_bytes()),
                (b"o".to_vec(), b"0".to_vec()),
                (b"n".to_vec(), count.to_string().into_bytes()),
                (b"b".to_vec(), body),
            ],
        };
        self.take_reply(&reply);
    }

    /// Batch `tag` of `count` items, sent by slot `slot`, is pending from
    /// now: `payload` is its `Run` message, to send again if Redis loses it.
    pub(super) fn expect(&self, tag: u64, slot: usize, count: u32, payload: Arc<Vec<u8>>) {
        let p = Pending {
            slot,
            outcomes: vec![None; count as usize],
            filled: 0,
            nanos: 0,
            entry: None,
            missing_since: None,
            payload,
        };
        self.state.lock().unwrap().pending.insert(tag, p);
    }

    /// Every batch pending, with its `Run` message.
    pub(super) fn pending_payloads(&self) -> Vec<(u64, Arc<Vec<u8>>)> {
        let state = self.state.lock().unwrap();
        state.pending.iter().map(|(t, p)| (*t, p.payload.clone())).collect()
    }

    /// Slot `slot`'s end of its channel: its `Done` frames go there.
    pub(super) fn connect(&self, slot: usize, writer: Arc<UnixStream>) {
        self.state.lock().unwrap().writers.insert(slot, writer);
    }

    /// Closes slot `slot`'s channel: its relay ends.
    pub(super) fn disconnect(&self, slot: usize) {
        if let Some(w) = self.state.lock().unwrap().writers.remove(&slot) {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }

    /// The threads end: each channel is closed.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for w in self.state.lock().unwrap().writers.drain() {
            let _ = w.1.shutdown(std::net::Shutdown::Both);
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Why Redis is lost to the pool, if it is.
    pub(super) fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap().clone()
    }

    /// Reads of the reply stream so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Acquire)
    }

    /// One more read of the reply stream is done.
    pub(super) fn read_done(&self) {
        self.reads.fetch_add(1, Ordering::Release);
    }

    /// Redis stayed out of reach: every batch pending fails with `why`.
    pub(super) fn lose(&self, why: String) {
        let tags: Vec<u64> = self.state.lock().unwrap().pending.keys().copied().collect();
        let why = format!("Redis could not be reached: {why}");
        for tag in tags {
            self.fail_batch(tag, &why);
        }
        *self.lost.lock().unwrap() = Some(why);
    }

    /// Whether each of `hosts` holds a live lease, in one round trip.
    fn leased(&self, conn: &mut Conn, hosts: &[String]) -> redis::RedisResult<Vec<bool>> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Pipe::new();
        for h in hosts {
            pipe.cmd("EXISTS").arg(self.keys.lease(h));
        }
        conn.pipe(&pipe)
    }

    /// How many of the pool's hosts hold a live lease: one that died stays
    /// in the hosts hash, and is not waited for. The relays' [`Depth`]
    /// follows their workers.
    pub(super) fn live_hosts(&self, conn: &mut Conn) -> redis::RedisResult<usize> {
        let hosts: Vec<(String, String)> = conn.run(cmd("HGETALL").arg(self.keys.hosts()))?;
        let names: Vec<String> = hosts.iter().map(|(h, _)| h.clone()).collect();
        let (mut live, mut workers) = (0, 0);
        for ((_, what), leased) in hosts.iter().zip(self.leased(conn, &names)?) {
            if leased {
                live += 1;
                workers += wire::host_workers(what);
            }
        }
        self.depth.follow(workers);
        Ok(live)
    }

    /// Exit-hook outcomes that came so far.
    pub(crate) fn take_exits(&self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.exits.lock().unwrap())
    }
}

impl crate::transport::Broadcast for Shared {
    fn broadcast(&self, payload: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let k = &self.keys;
        let mut conn = Conn::lazy(&self.endpoint, self.patience);
        let hosts: Vec<String> = conn.run(cmd("HKEYS").arg(k.hosts())).map_err(|e| e.to_string())?;
        let id = self.next_broadcast.fetch_add(1, Ordering::Relaxed);
        self.broadcasts.lock().unwrap().insert(id, Vec::new());
        let mut pipe = Pipe::new();
        for h in &hosts {
            let inbox = k.inbox(h);
            pipe.cmd("XADD").arg(&inbox).arg("*").arg("t").arg(id).arg("f").arg(payload).ignore();
            pipe.cmd("PEXPIRE").arg(&inbox).arg(self.key_ttl.as_millis() as u64).ignore();
        }
        let sent = conn.retrying_pipe(&pipe);
        // Every host that took it answers, or is found dead by its lease.
        let mut waiting: Vec<String> = if sent.is_ok() { hosts } else { Vec::new() };
        let mut checked = Instant::now();
        while !waiting.is_empty() && !self.stopping() && self.lost.lock().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
            {
                let got = self.broadcasts.lock().unwrap();
                let replies = &got[&id];
                waiting.retain(|h| !replies.iter().any(|(r, _)| r == h));
            }
            if checked.elapsed() > Duration::from_millis(100) {
                checked = Instant::now();
                let alive = self.leased(&mut conn, &waiting).unwrap_or_default();
                let mut alive = alive.into_iter();
                waiting.retain(|_| alive.next().unwrap_or(false));
            }
        }
        let mut replies = self.broadcasts.lock().unwrap().remove(&id).unwrap_or_default();
        sent.map_err(|e| e.to_string())?;
        replies.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(replies.into_iter().flat_map(|(_, items)| items).collect())
    }
}

/// An error outcome of `status` saying `why`.
fn error_item(status: Status, why: &str) -> Option<Vec<u8>> {
    let mut one = Vec::new();
    outcome::write_message(&mut one, status, why, &mut false);
    Some(one)
}

/// `count` items back to back in `body`, each one's bytes; `None` unless
/// `body` holds exactly that many well-formed items.
fn split_items(body: &[u8], count: u32) -> Option<Vec<Vec<u8>>> {
    let (out, rest) = item::split(body, count).ok()?;
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::channel::message::Message;

    fn shared() -> Shared {
        let url = "redis://127.0.0.1:1";
        let client = Endpoint::new(redis::Client::open(url).unwrap(), url, None);
        let second = Duration::from_secs(1);
        let times = (second, second, 1 << 20, second, second);
        Shared::new(Keys::new("t"), client, times, (Vec::new(), String::new()), 8)
    }

    fn reply(tag: u64, first: u32, values: &[u64]) -> Entry {
        let mut body = Vec::new();
        for v in values {
            outcome::write(&mut body, Status::Ok, v, &mut false);
        }
        Entry {
            id: "1-0".into(),
            fields: vec![
                (b"t".to_vec(), tag.to_string().into_bytes()),
                (b"o".to_vec(), first.to_string().into_bytes()),
                (b"n".to_vec(), values.len().to_string().into_bytes()),
                (b"b".to_vec(), body),
            ],
        }
    }

    /// A group reply of `(tag, first, values)` pieces, the last `cut`
    /// bytes short.
    fn group(pieces: &[(u64, u32, &[u64])], cut: usize) -> Entry {
        let mut g = Vec::new();
        for &(tag, first, values) in pieces {
            let mut body = Vec::new();
            for v in values {
                outcome::write(&mut body, Status::Ok, v, &mut false);
            }
            let count = values.len() as u32;
            wire::reply_piece(&mut g, &wire::Piece { tag, nanos: 5, first, count, body: &body });
        }
        g.truncate(g.len() - cut);
        Entry {
            id: "1-0".into(),
            fields: vec![(b"k".to_vec(), b"g".to_vec()), (b"h".to_vec(), b"h1".to_vec()), (b"g".to_vec(), g)],
        }
    }

    #[test]
    fn a_group_reply_fills_each_batch_it_names_and_a_cut_one_fills_what_came_whole() {
        let s = shared();
        let (theirs, ours) = UnixStream::pair().unwrap();
        s.connect(0, Arc::new(ours));
        for tag in [1, 2, 3] {
            s.expect(tag, 0, 1, Arc::new(Vec::new()));
        }
        s.take_reply(&group(&[(1, 0, &[10]), (2, 0, &[20])], 0));
        let pending = || {
            let mut p: Vec<u64> = s.state.lock().unwrap().pending.keys().copied().collect();
            p.sort();
            p
        };
        assert_eq!(pending(), [3]);
        // Cut inside its second piece: the first is taken, tag 3 waits.
        s.take_reply(&group(&[(1, 0, &[11]), (3, 0, &[30])], 1));
        assert_eq!(pending(), [3]);
        assert_eq!(s.duplicates.load(Ordering::Relaxed), 1, "tag 1's second outcome");
        let mut done = Vec::new();
        theirs.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..2 {
            let mut frame = Vec::new();
            assert!(frame::read_blocking(&mut &theirs, &mut frame, 1 << 20).unwrap());
            let Ok(Message::Done { tag, body, .. }) = Message::parse(&frame) else {
                panic!("not a Done")
            };
            let v: u64 = outcome::read_one(&frame[body]).unwrap().unwrap();
            done.push((tag, v));
        }
        assert_eq!(done, [(1, 10), (2, 20)]);
    }

    #[test]
    fn each_item_keeps_its_first_outcome_and_the_batch_goes_up_whole() {
        let s = shared();
        let (theirs, ours) = UnixStream::pair().unwrap();
        s.connect(0, Arc::new(ours));
        s.expect(7, 0, 3, Arc::new(Vec::new()));
        // Item 1 alone (a split batch), then the whole batch run again
        // elsewhere: item 1 keeps its first outcome.
        s.take_reply(&reply(7, 1, &[100]));
        s.take_reply(&reply(7, 0, &[10, 11, 12]));
        assert!(s.state.lock().unwrap().pending.is_empty());
        // A third copy, late: dropped and counted.
        s.take_reply(&reply(7, 0, &[20, 21, 22]));
        assert_eq!(s.duplicates.load(Ordering::Relaxed), 1);
        let mut frame = Vec::new();
        theirs.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(frame::read_blocking(&mut &theirs, &mut frame, 1 << 20).unwrap());
        let Ok(Message::Done { tag, first, count, body, .. }) = Message::parse(&frame) else {
            panic!("not a Done")
        };
        assert_eq!((tag, first, count), (7, 0, 3));
        let mut got = Vec::new();
        outcome::read_each::<u64>(&mut item::Items::new(&frame[body]), 3, |r| {
            got.push(r.unwrap());
            true
        })
        .unwrap();
        assert_eq!(got, [10, 100, 12]);
        // Nothing more was sent.
        theirs.set_nonblocking(true).unwrap();
        assert!((&theirs).read(&mut [0u8; 1]).is_err());
    }

    #[test]
    fn a_malformed_reply_is_an_error_for_its_items_never_a_panic() {
        let s = shared();
        s.expect(1, 9, 2, Arc::new(Vec::new()));
        let mut bad = reply(1, 0, &[1, 2]);
        bad.fields[3].1.truncate(1);
        s.take_reply(&bad);
        // Out of range, or not ours: ignored.
        s.take_reply(&reply(1, 1, &[5, 6]));
        s.take_reply(&reply(99, 0, &[5]));
        let state = s.state.lock().unwrap();
        assert!(state.pending.is_empty(), "the two items got their errors");
    }
}
