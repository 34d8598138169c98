//! The driver's threads of a Redis pool: a relay per slot (the driver's
//! `Run` frames to the task stream), the reply reader (the hosts' replies
//! to the relays' channels, as `Done` frames) and the keeper (the pool's
//! keys kept alive, and put back if Redis lost them). What they share is
//! [`super::shared::Shared`]; they tell the driver's poller what
//! happened through [`Events`].

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;
use redis::{cmd, Value};

use super::conn::{Conn, Pipe};
use super::shared::Shared;
use super::wire::{self};
use crate::channel::message::{write, Message};
use crate::channel::frame;
use crate::transport::Event;


/// What the threads tell the driver's poller: an eventfd it polls, and
/// the events behind it.
pub(super) struct Events {
    pub(super) fd: EventFd,
    pub(super) queue: Mutex<Vec<Event>>,
}

impl Events {
    pub(super) fn push(&self, e: Event) {
        self.queue.lock().unwrap().push(e);
        let _ = self.fd.write(1);
    }
}

/// A relay: takes the `Run` frames the driver sends slot `slot` and adds
/// them to the task stream; those that came together, in one round trip.
pub(super) fn relay(shared: &Shared, slot: usize, reader: UnixStream, writer: &UnixStream) {
    let mut conn = Conn::lazy(&shared.endpoint, shared.patience);
    let mut frames = frame::FrameReader::new(shared.max_frame);
    let mut src = Blocking(reader);
    loop {
        match frames.fill_spare(&mut src) {
            Ok(frame::Fill::Eof) | Err(_) => return,
            Ok(_) => {}
        }
        let mut batches: Vec<(u64, Arc<Vec<u8>>)> = Vec::new();
        // `Some(true)`: an `Exit` came; `Some(false)`: something else than a `Run`.
        let mut end = None;
        while let Ok(Some(f)) = frames.next_frame() {
            let payload = &f[frame::PREFIX..];
            match Message::parse(payload) {
                Ok(Message::Run { tag, count, .. }) => {
                    let payload = Arc::new(payload.to_vec());
                    shared.expect(tag, slot, count, payload.clone());
                    batches.push((tag, payload));
                }
                // The hosts run exit hooks as they leave (`shutdown`).
                Ok(Message::Exit { .. }) => end = Some(true),
                _ => end = Some(false),
            }
            if end.is_some() {
                break;
            }
        }
        // No host for `host_wait`, none since: they fail now, unsent.
        let hostless = if batches.is_empty() { None } else { shared.hostless(&mut conn) };
        if let Some(why) = hostless {
            for (tag, _) in batches.drain(..) {
                shared.fail_batch(tag, &why);
            }
        }
        if !batches.is_empty() {
            let send: Vec<(u64, &[u8])> = batches.iter().map(|(t, p)| (*t, p.as_slice())).collect();
            if let Err(e) = shared.add_tasks(&mut conn, &send) {
                for (tag, _) in &batches {
                    shared.fail_batch(*tag, &format!("could not add the batch to Redis: {e}"));
                }
            }
        }
        match end {
            Some(true) => {
                let mut out = Vec::new();
                let start = write::exited(&mut out);
                let _ = frame::finish(&mut out, start, shared.max_frame);
                let _ = (&*writer).write_all(&out);
                return;
            }
            Some(false) => return,
            None => {}
        }
    }
}

/// A relay's end of its channel, read blocking: waits for bytes, then
/// takes what is there.
struct Blocking(UnixStream);

impl frame::ReadSpare for Blocking {
    fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsRawFd;
        loop {
            match crate::sys::recv_spare(self.0.as_raw_fd(), buf, max) {
                Err(nix::errno::Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                other => return other.map_err(std::io::Error::from),
            }
        }
    }
}

/// The reply reader: takes every reply as it comes, and deletes it.
pub(super) fn read_replies(shared: &Shared, events: &Events) {
    let mut conn = Conn::lazy(&shared.endpoint, shared.patience);
    let replies = shared.keys.replies();
    // Replies taken, to delete in one round trip with the next read: the
    // stream holds only unread ones.
    let mut read_ids: Vec<String> = Vec::new();
    while !shared.stopping() {
        let mut pipe = Pipe::new();
        if !read_ids.is_empty() {
            pipe.cmd("XDEL").arg(&replies).arg(&read_ids).ignore();
        }
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(&replies)
            .arg("0-0");
        let read: redis::RedisResult<Vec<Value>> = conn.pipe(&pipe);
        let entries = match read {
            Ok(v) => {
                read_ids.clear();
                v.first().map(wire::read_reply).unwrap_or_default()
            }
            Err(e) => {
                if shared.stopping() {
                    return;
                }
                shared.lose(e.to_string());
                events.push(Event::Lost(format!("Redis could not be reached: {e}")));
                return;
            }
        };
        for e in &entries {
            shared.take_reply(e);
        }
        shared.read_done();
        read_ids.extend(entries.into_iter().map(|e| e.id));
    }
}

/// The keeper: keeps the pool's keys from expiring while the driver
/// lives, and puts them back (resending what is pending) if Redis lost
/// them (restarted without persistence, or flushed).
pub(super) fn keep(shared: &Shared) {
    let mut conn = Conn::lazy(&shared.endpoint, shared.patience);
    let every = (shared.key_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut next = Instant::now();
    let mut no_host_since: Option<Instant> = None;
    while !shared.stopping() {
        std::thread::sleep(Duration::from_millis(20));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        match conn.run::<bool>(cmd("EXISTS").arg(shared.keys.hello())) {
            Ok(true) => {
                let _ = shared.refresh(&mut conn);
                shared.resend_lost(&mut conn);
                let live = shared.live_hosts(&mut conn);
                shared.fail_without_hosts(&mut conn, live, &mut no_host_since);
            }
            Ok(false) => {
                if shared.publish(&mut conn).is_err() {
                    continue;
                }
                for (tag, payload) in shared.pending_payloads() {
                    let _ = shared.add_task(&mut conn, tag, &payload);
                }
            }
            Err(_) => {}
        }
    }
}

