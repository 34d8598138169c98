//! A host's consumers: each takes entries of the pool's task stream (or
//! of dead hosts' consumers), runs them on the host's local pool, and
//! sends their replies; one that kills hosts is split out, then
//! quarantined.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::{cmd, Script, Value};

use super::{Live, Session};
use crate::channel::message::Message;
use crate::channel::outcome;
use crate::driver::Driver;
use crate::error::{Error, ErrorKind};
use crate::redis::conn::{Conn, Pipe};
use crate::redis::keys::GROUP;
use crate::redis::local;
use crate::redis::wire::{self, Entry};

/// Where a consumer marks the entry it runs (see [`wire::RECLAIM`]).
struct Mark {
    key: String,
    /// How long the mark outlives the last heartbeat that kept it.
    ttl_ms: u64,
}

impl Session {
    /// Entries for consumer `me`, which holds none now: its own pending
    /// ones first (delivered by a read whose answer a cut connection lost:
    /// it never saw them), then those of dead hosts' consumers.
    pub(super) fn reclaim(&self, conn: &mut Conn, script: &Script, me: &str) -> Vec<(Entry, u32)> {
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

    /// Consumer `n`, named `host/n` in the group: takes entries, runs them
    /// one after another, replies. Before it runs one of several it holds it
    /// marks it, a write it does not wait for, so that if this host dies
    /// only that entry is charged for the death ([`wire::RECLAIM`]); one it
    /// holds alone needs no mark (with none, all a consumer held is
    /// charged), once the last mark is deleted and every entry it ran is
    /// replied to: an `apply` costs Redis no command more than its read and
    /// reply. Fresh entries of short tasks are taken several at a time
    /// ([`Prefetch`]), their replies sent together in one round trip with
    /// the next read; when a read brought all it asked for (more work
    /// waits), the next read, which does not block, goes with the replies
    /// before the group runs, and its answer is read after ([`ReadAhead`]).
    /// Every quarter lease, holding nothing, it takes what dead hosts held.
    /// It runs nothing it took before its host's lease lapsed
    /// ([`Live::still_own`]).
    pub(super) fn consume(&self, n: usize, driver: &Driver, live: &Live) {
        let me = format!("{}/{n}", self.host);
        let mark = Mark {
            key: self.keys.mark(&me),
            ttl_ms: (self.config.lease * 10).as_millis() as u64,
        };
        let mut conn = Conn::lazy(&self.endpoint, self.config.lease.max(Duration::from_secs(5)));
        let script = Script::new(wire::RECLAIM);
        let every = (self.config.lease / 4).max(Duration::from_millis(10));
        let mut next_reclaim = Instant::now();
        let mut prefetch = Prefetch::default();
        // Replies not sent yet.
        let mut replies: Vec<Reply> = Vec::new();
        // The mark may name an entry: it is deleted before a lone one runs.
        let mut marked = false;
        // Marks written so far: a deletion sent before the last of them
        // leaves the mark naming an entry.
        let mut marks = 0u64;
        let mut ahead: Option<ReadAhead> = None;
        while !live.leaving.load(Ordering::Acquire) {
            let (mut held, mut seen, mut asked) = (Vec::new(), 0, 0);
            if let Some(a) = ahead.take() {
                (seen, asked) = (a.seen, a.asked);
                held = self.read_ahead(&mut conn, a, &mut replies, (marks, &mut marked));
            }
            if held.is_empty() {
                // Takes nothing while the lease may have lapsed: what it
                // took could be another host's before it ran it.
                seen = live.lapses.load(Ordering::Acquire);
                if !live.still_own(seen) {
                    continue;
                }
                if Instant::now() >= next_reclaim {
                    self.flush(&mut conn, &me, &mut replies, (&mark, &mut marked));
                    held = self.reclaim(&mut conn, &script, &me);
                    // Found some: there may be more.
                    next_reclaim = Instant::now() + if held.is_empty() { every } else { Duration::ZERO };
                }
            }
            if held.is_empty() {
                asked = prefetch.count();
                let pipe = self.read_pipe(&me, &replies, marked.then_some(&mark), asked, true);
                replies.clear();
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
            // More waits: the next read goes now, with the replies so far.
            // It shares the group's `seen`: if the group stops short, for a
            // lapse or a leave, what it brings is not run either.
            if held.len() > 1 && held.len() == asked && Instant::now() < next_reclaim && live.still_own(seen) {
                let asked = prefetch.count();
                conn.send_pipe(&self.read_pipe(&me, &replies, marked.then_some(&mark), asked, false));
                ahead = Some(ReadAhead {
                    seen,
                    asked,
                    marks,
                    replies: std::mem::take(&mut replies),
                });
            }
            let started = Instant::now();
            let mut ran = 0;
            let alone = held.len() == 1 && !marked && replies.is_empty();
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
                    marks += 1;
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
        if let Some(a) = ahead.take() {
            // What it brought stays pending, uncharged, for others.
            self.read_ahead(&mut conn, a, &mut replies, (marks, &mut marked));
        }
        self.flush(&mut conn, &me, &mut replies, (&mark, &mut marked));
    }

    /// The pipeline that sends `replies` and deletes `mark`, if there are.
    fn reply_pipe(&self, me: &str, replies: &[Reply], mark: Option<&Mark>) -> Pipe {
        let mut pipe = Pipe::new();
        if !replies.is_empty() {
            pipe.add_command(self.send_replies(me, replies)).ignore();
        }
        if let Some(mark) = mark {
            pipe.cmd("DEL").arg(&mark.key).ignore();
        }
        pipe
    }

    /// [`Session::reply_pipe`], then a read of at most `count` fresh
    /// entries, waiting for some if `block`.
    fn read_pipe(&self, me: &str, replies: &[Reply], mark: Option<&Mark>, count: usize, block: bool) -> Pipe {
        let mut pipe = self.reply_pipe(me, replies, mark);
        pipe.cmd("XREADGROUP").arg("GROUP").arg(GROUP).arg(me).arg("COUNT").arg(count);
        if block {
            pipe.arg("BLOCK").arg(100);
        }
        pipe.arg("STREAMS").arg(self.keys.tasks()).arg(">");
        pipe
    }

    /// The entries the read sent ahead brought (none if it was lost, when
    /// its replies go back to `replies`, to be sent again: a reply to an
    /// entry no longer held is left out). `marked` is cleared if it deleted
    /// the mark and no mark was written since (`marks` counts them).
    fn read_ahead(
        &self,
        conn: &mut Conn,
        a: ReadAhead,
        replies: &mut Vec<Reply>,
        (marks, marked): (u64, &mut bool),
    ) -> Vec<(Entry, u32)> {
        match conn.recv_pipe::<Vec<Value>>() {
            Ok(v) => {
                *marked &= marks != a.marks;
                let entries = v.first().map(wire::read_reply).unwrap_or_default();
                entries.into_iter().map(|e| (e, 1)).collect()
            }
            Err(_) => {
                replies.extend(a.replies);
                Vec::new()
            }
        }
    }

    /// Sends the replies not sent yet, and deletes the mark if there is one.
    fn flush(&self, conn: &mut Conn, consumer: &str, replies: &mut Vec<Reply>, (mark, marked): (&Mark, &mut bool)) {
        if replies.is_empty() && !*marked {
            return;
        }
        let pipe = self.reply_pipe(consumer, replies, marked.then_some(mark));
        replies.clear();
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
            c.arg(&r.id).arg(&r.piece);
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

}

/// A read a consumer sent before running the group it holds, its answer
/// read after.
struct ReadAhead {
    /// The lease's lapses when it was sent: what it brings is run only if
    /// none came since.
    seen: u64,
    /// How many entries it asked for.
    asked: usize,
    /// Marks written before it.
    marks: u64,
    /// The replies it carries.
    replies: Vec<Reply>,
}

/// How many fresh entries a consumer takes at once: as many as it runs in
/// about [`Prefetch::HOLD`], one while it has not run any. A host thus
/// holds little work another host could have run (none beyond one entry
/// per worker when tasks are long; twice `HOLD` of short ones while a read
/// sent ahead waits), and short tasks cost a round trip to Redis per group
/// instead of per entry.
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

/// An entry's reply: its id, and the piece that says the outcomes of
/// `count` items from `first` of batch `tag`, computed in `nanos`.
struct Reply {
    id: String,
    piece: Vec<u8>,
}

impl Reply {
    fn new(e: &Entry, (tag, first, count): (u64, u32, u32), nanos: u64, outcomes: Vec<u8>) -> Reply {
        let mut piece = Vec::new();
        let p = wire::Piece {
            tag,
            nanos,
            first,
            count,
            body: &outcomes,
        };
        wire::reply_piece(&mut piece, &p);
        Reply { id: e.id.clone(), piece }
    }
}
