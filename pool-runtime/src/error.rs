//! The one error type of the crate: what went wrong, said plainly.

use std::fmt;

/// Why a call on a pool failed, or why one input got no result.
///
/// Inspect it with [`Error::kind`]; print it for a message that says what
/// happened (a panic's message and location, the signal that killed a worker,
/// the init's own error).
pub struct Error {
    kind: ErrorKind,
}

/// Reads like `Display`, so that `main` returning an `Error` prints the
/// message, not a struct dump.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A worker's init returned an error or panicked.
    Init(String),
    /// User code panicked on this input, the worker lives on: the task, or
    /// a `Serialize`/`Deserialize` of its input or result (wherever it ran,
    /// in a worker or in the caller's thread; the text then starts with
    /// where, e.g. `while decoding the input: `). The [`Panic`] has the
    /// panic's message and location.
    Panicked(Panic),
    /// A stage of a [`Pipeline`](crate::Pipeline) returned `Err` for this
    /// input, which went no further: the text names the stage and gives the
    /// error's `Display`.
    Failed(String),
    /// The worker running this input died: the [`WorkerDeath`] says how
    /// (signal, exit code), its pid and, when it died in the input's
    /// `Deserialize` or the result's `Serialize`, where (`… while decoding
    /// the input`).
    WorkerDied(WorkerDeath),
    /// The input ran past the pool's task timeout; its worker was killed.
    TimedOut(String),
    /// The input killed more workers than the pool's retries allow; it is
    /// not run again.
    Quarantined(String),
    /// The input could not be encoded or decoded, or the output could not:
    /// the text says which (`could not decode the input: …`) and why, in the
    /// words of the type's own `Serialize` or `Deserialize` when it was the
    /// one that refused.
    Codec(String),
    /// The function passed to the pool carries no `#[worker_task]` or
    /// `#[worker_exit]` attribute, so workers cannot find it by name.
    NotRegistered(&'static str),
    /// The pool can no longer run anything (its fork server died, or no
    /// worker could be started).
    PoolBroken(String),
    /// [`Pool::terminate`](crate::Pool::terminate) was called before this
    /// input got its outcome (or this call came after it).
    Terminated,
    /// A system call failed.
    Io(String),
}

/// A panic in user code: [`ErrorKind::Panicked`].
///
/// Its fields say what the panic said and where; it derefs to the whole
/// text, as [`Display`](fmt::Display) shows it after `task panicked: `
/// (`while decoding the input: bad byte at src/row.rs:12:9`).
///
/// ```
/// # use pool_runtime::{ErrorKind, Panic};
/// fn explain(kind: &ErrorKind) -> String {
///     match kind {
///         ErrorKind::Panicked(Panic { message, location: Some(at), .. }) => {
///             format!("{message} (line {} of {})", at.line, at.file)
///         }
///         other => format!("{other:?}"),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Panic {
    /// The panic's own message (`index out of bounds: …`).
    pub message: String,
    /// Where it panicked, when the panic hook saw it.
    pub location: Option<Location>,
    text: String,
}

/// A place in the source: where a panic happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Location {
    /// The source file, as the compiler named it.
    pub file: String,
    /// Its line, from 1.
    pub line: u32,
    /// Its column, from 1.
    pub column: u32,
}

/// `file:line:column`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Panic {
    /// A panic that said `message` at `location`, `during` some step of an
    /// input's life (`while decoding the input`; empty for the task itself).
    pub(crate) fn new(during: &str, message: String, location: Option<Location>) -> Panic {
        let mut text = String::with_capacity(during.len() + message.len() + 32);
        if !during.is_empty() {
            text.push_str(during);
            text.push_str(": ");
        }
        text.push_str(&message);
        if let Some(at) = &location {
            use fmt::Write;
            let _ = write!(text, " at {at}");
        }
        Panic {
            message,
            location,
            text,
        }
    }

    /// A panic as it came over the wire: the text was made by [`Panic::new`] on the other side.
    pub(crate) fn from_parts(text: String, message: String, location: Option<Location>) -> Panic {
        Panic {
            message,
            location,
            text,
        }
    }

    /// The whole text: where (if not in the task), the message, the location.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerExit {
    /// It exited with this code.
    Code(i32),
    /// The signal with this number killed it (9 for `SIGKILL`).
    Signal(i32),
}

/// In words: `exited with code 3`, `killed by signal 9 (SIGKILL)`.
impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WorkerExit::Code(code) => write!(f, "exited with code {code}"),
            WorkerExit::Signal(n) => match nix::sys::signal::Signal::try_from(n) {
                Ok(sig) => write!(f, "killed by signal {n} ({})", sig.as_str()),
                Err(_) => write!(f, "killed by signal {n}"),
            },
        }
    }
}

/// The death of the worker that held an input: [`ErrorKind::WorkerDied`].
///
/// Its fields say which process it was and how it ended, when the pool
/// knows; it derefs to the whole text, as [`Display`](fmt::Display) shows it
/// after `the worker running this input died: ` (`killed by signal 9
/// (SIGKILL) while decoding the input (pid 4242)`).
///
/// ```
/// # use pool_runtime::{ErrorKind, WorkerDeath, WorkerExit};
/// fn segfaulted(kind: &ErrorKind) -> bool {
///     matches!(
///         kind,
///         ErrorKind::WorkerDied(WorkerDeath { exit: Some(WorkerExit::Signal(11)), .. })
///     )
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerDeath {
    /// The worker's process id, when it had one.
    pub pid: Option<u32>,
    /// How the process ended, when the pool learnt it (a worker that
    /// broke the protocol, or whose exit report never came, has none).
    pub exit: Option<WorkerExit>,
    text: String,
}

impl WorkerDeath {
    pub(crate) fn new(pid: Option<u32>, exit: Option<WorkerExit>, text: String) -> WorkerDeath {
        WorkerDeath { pid, exit, text }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.exit {
            Some(WorkerExit::Signal(n)) => Some(n),
            _ => None,
        }
    }

    /// The code it exited with, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self.exit {
            Some(WorkerExit::Code(n)) => Some(n),
            _ => None,
        }
    }

    /// The whole text: how it ended, where, its pid.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The text of both, so that a `String`'s methods (`contains`,
/// `starts_with`) and comparisons with a `&str` work on them as they did.
macro_rules! text_like {
    ($($ty:ty),*) => {$(
        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.text
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.text == other
            }
        }
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.text == *other
            }
        }
        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.text == other
            }
        }
    )*};
}
text_like!(Panic, WorkerDeath);

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Init(m) => write!(f, "worker init failed: {m}"),
            // A panic in serde code says where it was ("while decoding …").
            ErrorKind::Panicked(m) if m.starts_with("while ") => write!(f, "panicked {m}"),
            ErrorKind::Panicked(m) => write!(f, "task panicked: {m}"),
            ErrorKind::Failed(m) => write!(f, "pipeline stage failed: {m}"),
            ErrorKind::WorkerDied(m) => write!(f, "the worker running this input died: {m}"),
            ErrorKind::TimedOut(m) => write!(f, "task timed out: {m}"),
            ErrorKind::Quarantined(m) => write!(f, "input quarantined: {m}"),
            ErrorKind::Codec(m) => write!(f, "serialization failed: {m}"),
            ErrorKind::NotRegistered(name) => write!(
                f,
                "`{name}` is not registered: mark it with #[worker_task] (or #[worker_exit])"
            ),
            ErrorKind::PoolBroken(m) => write!(f, "the pool cannot run tasks: {m}"),
            ErrorKind::Terminated => write!(f, "the pool was terminated"),
            ErrorKind::Io(m) => write!(f, "system error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::new(ErrorKind::Io(e.desc().to_string()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io(e.to_string()))
    }
}
