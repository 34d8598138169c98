//! The opt-in progress bar of `map`/`imap` (feature `progress`).
//!
//! The stream being iterated counts its outcomes in two plain fields and
//! publishes them with one relaxed store per outcome; a small ticker thread,
//! started with the bar, reads them ten times a second and hands them to
//! indicatif. So the per-item cost is a few nanoseconds (indicatif's own `inc`
//! reads the clock on every call), and the bar keeps moving (elapsed time,
//! spinner) even while the consumer is blocked waiting for a slow task.
//! A hidden bar (stderr not a terminal, no forcing) starts no thread and
//! counts nothing.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use indicatif::ProgressDrawTarget;

use super::Imap;

/// Whether, and where, `map`/`imap` calls draw a progress bar. Set it for a
/// whole pool with [`PoolBuilder::progress`](crate::PoolBuilder::progress),
/// or for one call with [`Imap::progress_mode`].
///
/// Needs the `progress` feature.
///
/// *Feature `progress` (on by default).*
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProgressMode {
    /// No bar (the default).
    #[default]
    Off,
    /// A bar on stderr if stderr is a terminal; nothing at all otherwise
    /// (a pipe, a file, a CI log).
    Auto,
    /// A bar on stderr even when it is not a terminal. Into a pipe or a file
    /// it writes the bar's redraws as text with terminal escape codes, at most
    /// ten a second.
    Always,
}

impl ProgressMode {
    /// Where to draw, and whether to end the bar's line with a newline: on a
    /// terminal indicatif leaves the cursor at the right edge, so the next
    /// output wraps to a new line; a pipe has no edge.
    fn target(self) -> Option<(ProgressDrawTarget, bool)> {
        match self {
            ProgressMode::Off => None,
            ProgressMode::Auto => Some((ProgressDrawTarget::stderr(), false)),
            ProgressMode::Always if std::io::stderr().is_terminal() => {
                Some((ProgressDrawTarget::stderr(), false))
            }
            ProgressMode::Always => Some((
                ProgressDrawTarget::term_like_with_hz(
                    Box::new(console::Term::buffered_stderr()),
                    TICKS_PER_SEC,
                ),
                true,
            )),
        }
    }
}

/// How often the ticker thread hands the counts to the bar.
const TICKS_PER_SEC: u8 = 10;
const TICK: Duration = Duration::from_millis(1000 / TICKS_PER_SEC as u64);

const WITH_TOTAL: &str =
    "[{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({rate}, ETA {eta}) {msg}";
const WITHOUT_TOTAL: &str = "{spinner} [{elapsed_precise}] {human_pos} done ({rate}) {msg}";

/// The `{rate}` of the templates: "870/s", "12.3k/s", "15.1M/s" (indicatif's
/// own `{per_sec}` prints four decimals).
fn rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let r = state.per_sec();
    let _ = match r {
        r if !r.is_finite() => write!(w, "-/s"),
        r if r >= 1e6 => write!(w, "{:.1}M/s", r / 1e6),
        r if r >= 1e4 => write!(w, "{:.1}k/s", r / 1e3),
        r if r >= 10.0 => write!(w, "{r:.0}/s"),
        r => write!(w, "{r:.1}/s"),
    };
}

/// The progress bar of one stream, as `Imap` holds it.
#[derive(Default)]
pub(crate) enum Slot {
    /// No bar.
    #[default]
    Off,
    /// A bar is asked for; it starts at the stream's next `next`, when the
    /// number of outcomes left is known from `size_hint`.
    Wanted {
        target: ProgressDrawTarget,
        /// Write a newline to stderr after the bar's last draw.
        newline: bool,
    },
    /// The bar is up.
    Running(Meter),
}

impl Slot {
    pub(crate) fn from_mode(mode: ProgressMode) -> Slot {
        match mode.target() {
            Some((target, newline)) => Slot::Wanted { target, newline },
            None => Slot::Off,
        }
    }

    /// The bar is asked for but not yet started.
    #[inline]
    pub(crate) fn is_wanted(&self) -> bool {
        matches!(self, Slot::Wanted { .. })
    }

    /// Starts the bar asked for; `hint` is the stream's `size_hint`.
    pub(crate) fn start(&mut self, hint: (usize, Option<usize>)) {
        if let Slot::Wanted { target, newline } = std::mem::take(self) {
            let total = match hint {
                (lo, Some(hi)) if lo == hi => Some(hi as u64),
                _ => None,
            };
            if let Some(meter) = Meter::start(target, total, newline) {
                *self = Slot::Running(meter);
            }
        }
    }

    /// Counts one outcome, or ends the bar at the end of the stream (`None`).
    #[inline]
    pub(crate) fn observe<T, E>(&mut self, outcome: Option<&Result<T, E>>) {
        if let Slot::Running(meter) = self {
            match outcome {
                Some(r) => meter.count(r.is_err()),
                None => meter.end(),
            }
        }
    }
}

/// What the stream publishes for the ticker thread.
#[derive(Default)]
struct Shared {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// A bar being drawn, and the thread that refreshes it.
pub(crate) struct Meter {
    bar: ProgressBar,
    shared: Arc<Shared>,
    done: u64,
    errors: u64,
    ticker: Option<JoinHandle<()>>,
    newline: bool,
}

impl Meter {
    /// `None` if the target draws nothing (stderr that is not a terminal):
    /// then no thread is started and nothing is counted.
    fn start(target: ProgressDrawTarget, total: Option<u64>, newline: bool) -> Option<Meter> {
        if target.is_hidden() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(total, target);
        let template = if total.is_some() {
            WITH_TOTAL
        } else {
            WITHOUT_TOTAL
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .with_key("rate", rate);
        bar.set_style(style);
        let shared = Arc::new(Shared::default());
        let ticker = {
            let (bar, shared) = (bar.clone(), shared.clone());
            std::thread::Builder::new()
                .name("pool-progress".into())
                .spawn(move || {
                    let mut shown_errors = 0;
                    while !shared.stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(TICK);
                        let errors = shared.errors.load(Ordering::Relaxed);
                        refresh(
                            &bar,
                            shared.done.load(Ordering::Relaxed),
                            errors,
                            shown_errors,
                        );
                        shown_errors = errors;
                    }
                })
        };
        // Without a thread the bar would only move when the stream ends:
        // draw nothing rather than a frozen bar.
        let ticker = ticker.ok()?;
        Some(Meter {
            bar,
            shared,
            done: 0,
            errors: 0,
            ticker: Some(ticker),
            newline,
        })
    }

    /// One outcome more: a few instructions, no clock, no lock.
    #[inline]
    fn count(&mut self, failed: bool) {
        self.done += 1;
        if failed {
            self.errors += 1;
            self.shared.errors.store(self.errors, Ordering::Relaxed);
        }
        self.shared.done.store(self.done, Ordering::Relaxed);
    }

    /// Stops the ticker and draws the exact final counts, once.
    fn end(&mut self) {
        let Some(ticker) = self.ticker.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::Release);
        ticker.thread().unpark();
        let _ = ticker.join();
        self.bar.set_position(self.done);
        // `abandon`, not `finish`: `finish` would show the total as done even
        // when the stream ended or was dropped short of it.
        self.bar.abandon_with_message(errors_message(self.errors));
        if self.newline {
            use std::io::Write;
            let _ = std::io::stderr().write_all(b"\n");
        }
    }
}

impl Drop for Meter {
    /// A stream dropped before its end leaves its bar where it stopped.
    fn drop(&mut self) {
        self.end();
    }
}

/// Hands the counts to the bar; the message only changes with the errors.
fn refresh(bar: &ProgressBar, done: u64, errors: u64, shown_errors: u64) {
    bar.set_position(done);
    if errors != shown_errors {
        bar.set_message(errors_message(errors));
    }
}

fn errors_message(errors: u64) -> Cow<'static, str> {
    match errors {
        0 => Cow::Borrowed(""),
        1 => Cow::Borrowed("1 error"),
        n => Cow::Owned(format!("{n} errors")),
    }
}

/// The progress bar of one `map`/`imap` call (feature `progress`).
impl<I, R> Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Draws a progress bar on stderr for this stream, if stderr is a
    /// terminal: outcomes done out of the total when the input iterator's
    /// `size_hint` gives it exactly (a spinner with a count otherwise), the
    /// rate, the ETA, and how many outcomes so far were errors. The bar
    /// stays on screen when the stream ends or is dropped, showing where it
    /// stopped. The same as `progress_mode(ProgressMode::Auto)`.
    ///
    /// For a `map` with a bar, collect the stream:
    /// `pool.imap(task, xs).progress().collect::<Result<Vec<_>, _>>()`
    /// (or set [`PoolBuilder::progress`](crate::PoolBuilder::progress)).
    ///
    /// Costs a few nanoseconds per outcome and one thread while the bar is
    /// up; nothing when the bar is not drawn.
    ///
    /// ```
    /// use pool_runtime::{worker_init, worker_task, Pool, ProgressMode};
    ///
    /// struct Nothing;
    ///
    /// #[worker_init]
    /// fn nothing(_: &()) -> Nothing { Nothing }
    ///
    /// #[worker_task]
    /// fn half(x: u64) -> u64 {
    ///     assert!(x % 10 != 7, "no sevens");
    ///     x / 2
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(nothing, ())?;
    /// // An imap with a bar on stderr (drawn only if stderr is a terminal):
    /// // "[00:00:01] ████████░░░░ 600/1,000 (580/s, ETA 1s) 60 errors".
    /// let mut ok = 0;
    /// for outcome in pool.imap(half, 0..1000).progress() {
    ///     if outcome.is_ok() {
    ///         ok += 1;
    ///     }
    /// }
    /// assert_eq!(ok, 900);
    /// // A map with a bar, drawn even into a pipe or a log file.
    /// let halves: Vec<u64> = pool
    ///     .imap(half, (0..1000).filter(|x| x % 10 != 7))
    ///     .progress_mode(ProgressMode::Always)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(halves.len(), 900);
    /// # Ok(()) }
    /// ```
    ///
    /// *Feature `progress` (on by default).*
    pub fn progress(self) -> Self {
        self.progress_mode(ProgressMode::Auto)
    }

    /// Sets this stream's progress bar: [`ProgressMode::Always`] draws it
    /// even when stderr is not a terminal, [`ProgressMode::Off`] turns off
    /// the bar the pool's builder asked for. Replaces any bar set before.
    ///
    /// *Feature `progress` (on by default).*
    pub fn progress_mode(mut self, mode: ProgressMode) -> Self {
        self.progress = Slot::from_mode(mode);
        self
    }

    /// Draws this stream's progress bar into `target`: an indicatif
    /// [`ProgressDrawTarget`], such as `ProgressDrawTarget::stdout()`, a
    /// `MultiProgress`, or an in-memory terminal in a test. A hidden target
    /// costs nothing. Replaces any bar set before.
    ///
    /// *Feature `progress` (on by default).*
    pub fn progress_to(mut self, target: ProgressDrawTarget) -> Self {
        self.progress = Slot::Wanted {
            target,
            newline: false,
        };
        self
    }
}
