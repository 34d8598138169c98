//! The driver's side of a Redis pool: a [`Transport`] whose workers are
//! relays in the driver's process. The jobs layer above it is the local
//! one, unchanged: it sends each slot's relay `Run` frames as it would a
//! worker, and the relay adds each to the pool's task stream, where any
//! host takes it. One reader takes the hosts' replies from the reply
//! stream and hands each relay, as its worker would, one `Done` per batch
//! ([`super::relay`]); what they know in common is
//! [`super::shared::Shared`].

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::unistd::Pid;
use redis::cmd;

use super::conn::{Conn, Pipe};
use super::keys::{self};
use super::relay::{self, Events};
use super::shared::Shared;
use crate::channel::control::Exit;
use crate::channel::message::write;
use crate::transport::{Event, Position, Relayed, Transport};


/// Stand-in process ids of the relays: above any real pid (`pid_max` is at
/// most 2^22), one per slot.
const RELAY_PID: i32 = 1 << 23;

/// The transport of a Redis pool (see the module docs).
pub(crate) struct RedisTransport {
    shared: Arc<Shared>,
    events: Arc<Events>,
    relays: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("pool", &self.shared.keys.id)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// The relays' reply reader and keeper start now; the relays, one per
    /// slot, as the driver starts its workers.
    pub(crate) fn start(shared: Arc<Shared>) -> nix::Result<RedisTransport> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        let events = Arc::new(Events {
            fd,
            queue: Mutex::new(Vec::new()),
        });
        let mut background = Vec::new();
        let s = shared.clone();
        let e = events.clone();
        background.push(spawn("pool-redis-replies", move || relay::read_replies(&s, &e)));
        let s = shared.clone();
        background.push(spawn("pool-redis-keeper", move || relay::keep(&s)));
        Ok(RedisTransport {
            shared,
            events,
            relays: Vec::new(),
            background,
        })
    }

    /// The pool's id in Redis.
    pub(crate) fn pool(&self) -> &str {
        &self.shared.keys.id
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("a relay thread")
}

fn relay_pid(slot: usize) -> Pid {
    Pid::from_raw(RELAY_PID + slot as i32)
}

impl Transport for RedisTransport {
    fn start(
        &mut self,
        slot: usize,
        _generation: u32,
        channel: &OwnedFd,
        _doorbell: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Option<crate::channel::ring::RingMap>, String> {
        if let Some(why) = self.shared.lost() {
            return Err(why);
        }
        let ours = channel.try_clone().map_err(|e| e.to_string())?;
        let reader = UnixStream::from(ours);
        let writer = Arc::new(reader.try_clone().map_err(|e| e.to_string())?);
        let mut ready = Vec::new();
        write::ready(&mut ready);
        (&*writer).write_all(&ready).map_err(|e| e.to_string())?;
        self.shared.connect(slot, writer.clone());
        let shared = self.shared.clone();
        self.relays.retain(|t| !t.is_finished());
        self.relays.push(spawn("pool-redis-relay", move || {
            relay::relay(&shared, slot, reader, &writer)
        }));
        self.events.push(Event::Started {
            slot,
            pid: relay_pid(slot),
        });
        Ok(None)
    }

    fn leave_with(&mut self, hook: u32, grace: Duration) -> Option<Vec<Vec<u8>>> {
        let shared = &self.shared;
        let k = &shared.keys;
        let mut conn = Conn::lazy(&shared.endpoint, shared.patience);
        if conn.run::<()>(cmd("HSET").arg(k.hello()).arg("closing").arg(hook)).is_ok() {
            // Hosts see it at their next heartbeat, finish what they hold,
            // run the hook on each worker, send its outcome, and leave.
            let deadline = Instant::now() + grace.max(Duration::from_secs(10)) + shared.lease * 2;
            while Instant::now() < deadline {
                match shared.live_hosts(&mut conn) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            // Every outcome was added before its host left: two more reads
            // of the reply stream bring them all.
            let seen = shared.reads();
            let wait = Instant::now() + Duration::from_secs(2);
            while shared.reads() < seen + 2 && Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut exits = shared.take_exits();
        // Host by host; each host's workers in its order.
        exits.sort_by(|a, b| a.0.cmp(&b.0));
        Some(exits.into_iter().map(|(_, body)| body).collect())
    }

    fn duplicates(&self) -> u64 {
        self.shared.duplicates.load(Ordering::Relaxed)
    }

    fn local_pids(&self) -> bool {
        false
    }

    fn relayed(&self) -> Option<Arc<Relayed>> {
        Some(self.shared.depth.handle())
    }

    fn broadcaster(&self) -> Option<Arc<dyn crate::transport::Broadcast>> {
        Some(self.shared.clone())
    }

    fn kill(&self, pid: Pid) {
        // A relay is stopped by closing its channel; the driver then sees
        // it end as it would a worker.
        let slot = (pid.as_raw() - RELAY_PID) as usize;
        self.shared.disconnect(slot);
        self.events.push(Event::Ended {
            pid,
            exit: Exit::Signal(libc::SIGKILL),
        });
    }

    fn events_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.events.fd.as_fd())
    }

    fn read_events(&mut self, out: &mut Vec<Event>) {
        let _ = self.events.fd.read();
        out.append(&mut self.events.queue.lock().unwrap());
    }

    fn position(&self, _: usize) -> Position {
        None
    }

    fn take_position(&self, _: usize) -> Position {
        None
    }

    fn is_lost(&self) -> bool {
        self.shared.lost().is_some()
    }

    fn shutdown(&mut self, grace: Duration) {
        let shared = &self.shared;
        let k = &shared.keys;
        let mut conn = Conn::lazy(&shared.endpoint, Duration::from_secs(1));
        // Hosts leave on their own first (they see `closing`), within grace.
        // `-`: no exit hook (`leave_with` may have named one already).
        let closing: redis::RedisResult<()> =
            conn.run(cmd("HSETNX").arg(k.hello()).arg("closing").arg("-"));
        if closing.is_ok() {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                match shared.live_hosts(&mut conn) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        shared.stop();
        for t in self.relays.drain(..).chain(self.background.drain(..)) {
            let _ = t.join();
        }
        let mut pipe = Pipe::new();
        pipe.cmd("DEL").arg(&k.owned()).ignore();
        pipe.cmd("ZREM").arg(keys::registry()).arg(&k.id).ignore();
        let _ = conn.retrying_pipe(&pipe);
        // And what hosts that died left: their leases, marks and inboxes.
        if let Ok(found) = conn.scan(&k.pattern(), &k.hello()) {
            for some in found.chunks(1000) {
                let _ = conn.run::<()>(cmd("DEL").arg(some));
            }
        }
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        if !self.background.is_empty() {
            self.shutdown(Duration::ZERO);
        }
    }
}

