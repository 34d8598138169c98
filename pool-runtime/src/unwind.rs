//! User code that panics: the panic becomes an error with its message and
//! location, printed by no one, wherever the code runs (a task, a `Serialize`
//! or `Deserialize` in a worker or in the driver, an exit hook).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Location, Panic};

/// A panic caught in user code: its message, and where, if the hook saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caught {
    pub(crate) message: String,
    pub(crate) location: Option<Location>,
}

impl Caught {
    /// The error of this panic, which happened `during` a step of an
    /// input's life (`while decoding the input`; empty: in the task).
    #[cold]
    pub(crate) fn during(self, during: &str) -> Panic {
        Panic::new(during, self.message, self.location)
    }
}

/// `message at file:line:column`, for the errors that keep text only (init).
impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.location {
            Some(at) => write!(f, " at {at}"),
            None => Ok(()),
        }
    }
}

thread_local! {
    /// The message and location of the last panic on this thread, recorded by
    /// the panic hook (the payload alone has no location).
    static LAST_PANIC: RefCell<Option<Caught>> = const { RefCell::new(None) };
    /// This thread's panics are recorded, not printed: always in a worker,
    /// and in the driver while it runs user code under [`catch_quiet`].
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that records panics on recording
/// threads and hands every other panic to the hook that was there before.
///
/// Called in the driver before its first fork, never in a worker: setting a
/// hook takes std's hook lock for writing, and a fork copies that lock as it
/// is, so a worker forked while some driver thread was panicking would wait
/// for it forever. Reading it, as a panic does, is fine.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if RECORDING.with(Cell::get) {
                let text = match info.payload().downcast_ref::<&str>() {
                    Some(s) => s.to_string(),
                    None => info
                        .payload()
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "Box<dyn Any>".into()),
                };
                let location = info.location().map(|l| Location {
                    file: l.file().to_string(),
                    line: l.line(),
                    column: l.column(),
                });
                let caught = Caught {
                    message: text,
                    location,
                };
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(caught));
            } else {
                previous(info);
            }
        }));
    });
}

/// In a worker: record this thread's panics as task errors instead of printing them.
pub(crate) fn record_panics_here() {
    RECORDING.with(|r| r.set(true));
}

/// A panic, as caught: what the hook recorded, else the payload alone.
#[cold]
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Caught {
    if let Some(recorded) = LAST_PANIC.with(|p| p.borrow_mut().take()) {
        return recorded;
    }
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    };
    Caught {
        message,
        location: None,
    }
}

/// Runs user code; a panic becomes its message and location. For a worker,
/// whose panics are always recorded.
#[inline]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) => Err(panic_message(&*payload)),
    }
}

/// Runs `f`, a stretch of the driver's code that calls user code only
/// under [`catch`], with this thread's panics recorded, not printed (a
/// thread of the user's own program records nothing otherwise).
#[inline]
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    /// Puts the thread's setting back, even if `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RECORDING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(RECORDING.with(|r| r.replace(true)));
    f()
}

/// [`catch`] on a thread of the user's own program (the driver's side),
/// [`quietly`].
#[inline]
pub(crate) fn catch_quiet<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    quietly(|| catch(f))
}
