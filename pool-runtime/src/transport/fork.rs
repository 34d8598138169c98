//! The fork transport: one fork server, forked at `build` from the driver
//! with the init arguments in its memory, forks every worker and reports how
//! each ended over a `SOCK_SEQPACKET` control pair (`channel/control.rs`).
//! Workers mark where they are in a shared mapping of step cells.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::socket::{recv, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::exec::{self, Program};
use super::zygote::{Launch, Zygote};
use super::{Event, Position, Transport};
use crate::channel::control::{Ctl, Exit};
use crate::channel::message;
use crate::error::{Error, ErrorKind};
use crate::sandbox::Sandbox;
use crate::channel::ring::RingMap;
use crate::sys::{self, Internal, StepCells};
use crate::task::Init;
use crate::worker::{self, Recycle};

/// The driver's side of the fork server. Its workers are forks of it (the
/// fork transport) or programs it starts fresh ([`ForkServer::start_fresh`]).
/// Dropping it without
/// [`shutdown`](Transport::shutdown) still ends and reaps every process it
/// started (a `build` that fails half-way leaves none behind).
#[derive(Debug)]
pub(crate) struct ForkServer {
    /// The control pair's driver end; `None` once the fork server is gone.
    ctl: Option<Internal<OwnedFd>>,
    pid: Pid,
    cells: StepCells,
    reaped: bool,
    /// The first frame of every worker started fresh.
    greeting: Option<Arc<Vec<u8>>>,
}

/// What the fork server's workers are started with, besides init and its arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings<'a> {
    pub(crate) workers: usize,
    pub(crate) max_frame: usize,
    pub(crate) recycle: &'a Recycle,
}

impl ForkServer {
    /// Forks the fork server, which holds `init` and `args` from now on (the
    /// driver's copies are dropped here) and forks each worker with them.
    pub(crate) fn start<A, S: 'static, I: Init<A, S, M>, M>(
        init: I,
        args: A,
        settings: Settings<'_>,
        sandbox: Option<&Sandbox>,
    ) -> Result<ForkServer, Error> {
        let server = Self::fork_the_server(settings, sandbox, None, &|start| {
            worker::main(&init, &args, start)
        });
        drop((init, args));
        server
    }

    /// Forks a fork server whose children exec `program` in worker mode;
    /// each is sent `hello` first (the init to run and its arguments).
    pub(crate) fn start_fresh(
        settings: Settings<'_>,
        sandbox: Option<&Sandbox>,
        program: &Program,
        hello: Vec<u8>,
    ) -> Result<ForkServer, Error> {
        let mut greeting = Vec::new();
        message::write::hello(&mut greeting, &hello);
        if greeting.len() > settings.max_frame {
            return Err(Error::new(ErrorKind::Codec(format!(
                "the init arguments take {} bytes, more than the frame limit of {}",
                greeting.len(),
                settings.max_frame
            ))));
        }
        Self::fork_the_server(settings, sandbox, Some(Arc::new(greeting)), &|start| {
            exec::launch(program, start)
        })
    }

    /// Forks a fork server whose workers each run `launch` (a Redis host's
    /// workers: their state from a greeting in the host's memory).
    #[cfg(feature = "redis")]
    pub(crate) fn start_with(settings: Settings<'_>, launch: Launch<'_>) -> Result<ForkServer, Error> {
        Self::fork_the_server(settings, None, None, launch)
    }

    /// Everything the fork server needs is made first: once it runs,
    /// nothing can fail before this owns it.
    fn fork_the_server(
        settings: Settings<'_>,
        sandbox: Option<&Sandbox>,
        greeting: Option<Arc<Vec<u8>>>,
        launch: Launch<'_>,
    ) -> Result<ForkServer, Error> {
        let cells = StepCells::new(settings.workers)?;
        let (ours, theirs) = sys::packet_pair()?;
        let (ours, theirs) = (Internal::new(ours), Internal::new(theirs));
        let theirs_raw = theirs.as_raw_fd();
        let pid = sys::fork_with(|| {
            sys::close_internal_fds(theirs_raw);
            Zygote {
                launch,
                cells: &cells,
                ctl: &theirs,
                max_frame: settings.max_frame,
                recycle: settings.recycle,
                sandbox,
            }
            .main()
        });
        drop(theirs);
        Ok(ForkServer {
            ctl: Some(ours),
            pid: pid?,
            cells,
            reaped: false,
            greeting,
        })
    }

    /// The fork server's pid.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    fn send(&self, msg: Ctl, fds: &[BorrowedFd<'_>]) -> nix::Result<()> {
        let ctl = self.ctl.as_ref().ok_or(Errno::EPIPE)?;
        sys::send_packet(ctl.as_fd(), &msg.encode(), fds)
    }

    fn lose(&mut self, why: &str, out: &mut Vec<Event>) {
        self.ctl = None;
        out.push(Event::Lost(why.into()));
    }
}

impl Transport for ForkServer {
    /// A forked worker gets a fresh pair of rings (a worker started
    /// fresh does not: it speaks the socket only).
    fn start(
        &mut self,
        slot: usize,
        generation: u32,
        channel: &OwnedFd,
        doorbell: BorrowedFd<'_>,
    ) -> Result<Option<RingMap>, String> {
        let msg = Ctl::Spawn {
            slot: slot as u32,
            generation,
        };
        // Without rings (no memory for them) the worker still serves.
        let rings = self.greeting.is_none().then(RingMap::new).and_then(Result::ok);
        let sent = match &rings {
            Some(r) => self.send(msg, &[channel.as_fd(), r.fd(), doorbell]),
            None => self.send(msg, &[channel.as_fd()]),
        };
        sent.map(|()| rings).map_err(|_| {
            self.ctl = None;
            "the fork server is gone".to_string()
        })
    }

    fn greeting(&self) -> Option<&Arc<Vec<u8>>> {
        self.greeting.as_ref()
    }

    /// A worker started fresh that exits on its own before it is ready,
    /// with nothing said, ran the program's `main`: worker mode says why
    /// whenever it gives up, and a crash is a signal.
    fn init_exit_hint(&self, exit: Exit) -> Option<&'static str> {
        (self.greeting.is_some() && matches!(exit, Exit::Code(_))).then_some(
            " (it never entered worker mode: does the worker program call \
             `pool_runtime::worker_mode()` first in `main`?)",
        )
    }

    fn kill(&self, pid: Pid) {
        let _ = self.send(
            Ctl::Kill {
                pid: pid.as_raw(),
                signal: Signal::SIGKILL as i32,
            },
            &[],
        );
    }

    fn events_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ctl.as_ref().map(|c| c.as_fd())
    }

    fn read_events(&mut self, out: &mut Vec<Event>) {
        let mut buf = [0u8; 64];
        while let Some(ctl) = &self.ctl {
            match recv(ctl.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return self.lose("the fork server died", out),
                Ok(n) => out.extend(match Ctl::decode(&buf[..n]) {
                    Some(Ctl::Spawned { slot, pid }) => Some(Event::Started {
                        slot: slot as usize,
                        pid: Pid::from_raw(pid),
                    }),
                    Some(Ctl::SpawnFailed { slot, errno }) => Some(Event::StartFailed {
                        slot: slot as usize,
                        why: format!("fork failed: {}", Errno::from_raw(errno).desc()),
                    }),
                    Some(Ctl::Exited { pid, how }) => Some(Event::Ended {
                        pid: Pid::from_raw(pid),
                        exit: how,
                    }),
                    _ => None,
                }),
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => return self.lose("the fork server's channel failed", out),
            }
        }
    }

    fn position(&self, slot: usize) -> Position {
        self.cells.get(slot).read()
    }

    fn take_position(&self, slot: usize) -> Position {
        self.cells.get(slot).take()
    }

    fn take_back(&self, slot: usize, tag: u64) -> bool {
        self.cells.get(slot).take_back(tag)
    }

    fn take_back_unseen(&self, slot: usize) -> bool {
        self.cells.get(slot).take_back_unseen()
    }

    fn take_breach(&self, slot: usize) -> u64 {
        self.cells.get(slot).take_breach()
    }

    fn is_lost(&self) -> bool {
        self.ctl.is_none()
    }

    /// Asks the fork server to stop (it gives its workers `grace`, then
    /// SIGKILLs them) and reaps it; past `grace` + 2 s (it should never
    /// happen) it is killed, so this never hangs. Without its channel (it
    /// died, or the pool broke) it is gone or going: it is still reaped.
    fn shutdown(&mut self, grace: Duration) {
        if std::mem::replace(&mut self.reaped, true) {
            return;
        }
        let _ = self.send(
            Ctl::Shutdown {
                grace_ms: grace.as_millis().try_into().unwrap_or(u32::MAX),
            },
            &[],
        );
        let give_up = Instant::now() + grace + Duration::from_secs(2);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = signal::kill(self.pid, Signal::SIGKILL);
                    let _ = waitpid(self.pid, None);
                    break;
                }
                _ => break,
            }
        }
        self.ctl = None;
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}
