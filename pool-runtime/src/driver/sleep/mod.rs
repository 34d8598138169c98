//! Sleep and wake: which thread polls the channels, which threads wait for
//! it, and how each one is woken. The invariants are in `README.md` beside
//! this file.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Condvar, MutexGuard};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::Core;
use crate::sys::Internal;

/// Who is asleep where: in `Core`, under the driver's lock.
#[derive(Debug, Default)]
pub(crate) struct Roles {
    /// A thread is inside `poll(2)` with the descriptors of this core.
    polling: bool,
    /// Threads waiting on [`Sleep::followers`] for the poller.
    waiting: usize,
    /// The async pump waits on [`Sleep::pump`] for a waker to be registered.
    #[cfg(feature = "async")]
    pump_parked: bool,
}

impl Roles {
    /// Whether a thread holds the polling role.
    pub(crate) fn polling(&self) -> bool {
        self.polling
    }

    /// Takes the polling role; `false` if another thread holds it.
    pub(crate) fn take_polling(&mut self) -> bool {
        !std::mem::replace(&mut self.polling, true)
    }

    /// Gives the polling role back, after the poll.
    pub(crate) fn end_polling(&mut self) {
        self.polling = false;
    }
}

/// The means to wake each kind of sleeper: in `Driver`.
#[derive(Debug)]
pub(crate) struct Sleep {
    /// Where threads that wait for the poller sleep.
    followers: Condvar,
    /// The poller's own wake-up: polled with the channels.
    wake: Internal<EventFd>,
    /// Where the async pump parks while no waker is registered.
    #[cfg(feature = "async")]
    pump: Condvar,
}

impl Sleep {
    /// The poller's wake-up descriptor is made before the fork server, so
    /// that once that runs nothing more can fail before the driver owns it.
    pub(crate) fn new() -> nix::Result<Self> {
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Sleep {
            followers: Condvar::new(),
            wake: Internal::new(wake),
            #[cfg(feature = "async")]
            pump: Condvar::new(),
        })
    }

    /// The descriptor the poller polls, first of all.
    pub(crate) fn fd(&self) -> RawFd {
        self.wake.as_fd().as_raw_fd()
    }

    /// A copy of the wake-up descriptor, for workers' rings to ring
    /// (`None` if it cannot be copied: workers then get no rings).
    pub(crate) fn doorbell(&self) -> Option<Internal<std::os::fd::OwnedFd>> {
        self.wake.as_fd().try_clone_to_owned().ok().map(Internal::new)
    }

    /// After `poll` said the wake-up descriptor is readable: resets it.
    pub(crate) fn woken(&self) {
        let _ = self.wake.read();
    }

    /// Waits, as a follower, until the poller (or a shutdown) wakes it, or
    /// for at most `limit`.
    pub(crate) fn follow<'a>(
        &self,
        mut core: MutexGuard<'a, Core>,
        limit: Option<Duration>,
    ) -> MutexGuard<'a, Core> {
        core.roles.waiting += 1;
        let mut core = match limit {
            None => self.followers.wait(core).unwrap_or_else(|p| p.into_inner()),
            Some(limit) => {
                let waited = self.followers.wait_timeout(core, limit);
                waited.map_or_else(|p| p.into_inner().0, |(core, _)| core)
            }
        };
        core.roles.waiting -= 1;
        core
    }

    /// After a poll: wakes the followers, if any (a lone caller has no one
    /// to wake: no futex call).
    pub(crate) fn wake_followers(&self, roles: &Roles) {
        if roles.waiting > 0 {
            self.followers.notify_all();
        }
    }

    /// Wakes the poller, if any, so it polls again with fresh interest (new
    /// data waiting to be written, a pump to stop).
    pub(crate) fn nudge(&self, roles: &Roles) {
        if roles.polling {
            let _ = self.wake.write(1);
        }
    }

    /// Parks the async pump until a waker is registered ([`unpark_pump`](Sleep::unpark_pump))
    /// or the pool stops ([`wake_all`](Sleep::wake_all)).
    #[cfg(feature = "async")]
    pub(crate) fn park_pump<'a>(&self, mut core: MutexGuard<'a, Core>) -> MutexGuard<'a, Core> {
        core.roles.pump_parked = true;
        let mut core = self.pump.wait(core).unwrap_or_else(|p| p.into_inner());
        core.roles.pump_parked = false;
        core
    }

    /// A waker was registered: the parked pump, if it is, drives the pool again.
    #[cfg(feature = "async")]
    pub(crate) fn unpark_pump(&self, roles: &mut Roles) {
        if std::mem::take(&mut roles.pump_parked) {
            self.pump.notify_one();
        }
    }

    /// At shutdown, to stop the pump: wakes every sleeper, wherever it
    /// sleeps (followers, the parked pump, the poller).
    #[cfg(feature = "async")]
    pub(crate) fn wake_all(&self, roles: &Roles) {
        self.followers.notify_all();
        self.pump.notify_all();
        self.nudge(roles);
    }
}
