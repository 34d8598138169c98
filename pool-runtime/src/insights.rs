//! What each worker did: [`Pool::insights`](crate::Pool::insights).
//!
//! Workers measure per chunk of items, never per cheap item: the time spent
//! decoding and encoding, the time spent writing result frames, and the
//! items that took longest (an item is timed on its own only when items take
//! a microsecond or more, so that the clock costs under 3 % of the work; a
//! chunk of cheaper items that took 100 µs or more is reported whole, as a
//! [`SlowInput::Range`]).
//! These figures ride on the `Done` frames that carry results anyway. The
//! driver adds what it sees itself: pids, restarts, init time (spawn to
//! ready), bytes on each channel, and keeps, for a slow item, its encoded
//! input, shown with `Debug` only when [`Pool::insights`](crate::Pool::insights)
//! is called.

use std::fmt;
use std::time::{Duration, Instant};

use crate::registry;

/// Slowest items kept per worker slot, and shown for the whole pool.
pub(crate) const SLOWEST: usize = 5;

/// A chunk of cheap items timed as a whole enters the slowest list only
/// past this (64 cheap items stay well under it): it hides a slow item.
const RANGE_FLOOR_NANOS: u64 = 100_000;

/// Encoded inputs kept for `Debug` up to this size; a larger one shows its index.
const INPUT_CAP: usize = 4096;

/// `Debug` text of a slow input, cut to this many characters.
const DEBUG_CAP: usize = 200;

// ----- the worker's side ----------------------------------------------------------

/// What a worker measured since its last `Done`, plus its all-time slowest
/// times (so that it only reports an item that may enter the driver's list).
#[derive(Debug, Default)]
pub(crate) struct WorkerTally {
    pub(crate) codec_nanos: u64,
    pub(crate) io_nanos: u64,
    /// `(item, items, nanos)` to report with the next `Done`.
    pub(crate) pending: Vec<(u32, u32, u64)>,
    /// The worker's slowest times so far, at most [`SLOWEST`].
    best: Vec<u64>,
}

impl WorkerTally {
    /// Items `item .. item + items` of the running batch took `nanos`.
    pub(crate) fn offer(&mut self, item: u32, items: u32, nanos: u64) {
        if items > 1 && nanos < RANGE_FLOOR_NANOS {
            return;
        }
        if self.best.len() < SLOWEST {
            self.best.push(nanos);
        } else {
            let (at, &min) = self
                .best
                .iter()
                .enumerate()
                .min_by_key(|(_, &n)| n)
                .expect("full");
            if nanos <= min {
                return;
            }
            self.best[at] = nanos;
        }
        self.pending.push((item, items, nanos));
        if self.pending.len() > SLOWEST {
            let (at, _) = self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.2)
                .expect("not empty");
            self.pending.swap_remove(at);
        }
    }

    /// Clears what was reported (the all-time slowest stay).
    pub(crate) fn reported(&mut self) {
        self.codec_nanos = 0;
        self.io_nanos = 0;
        self.pending.clear();
    }
}

// ----- the driver's side -------------------------------------------------------

/// One slow item as the driver keeps it.
#[derive(Debug, Clone)]
pub(crate) struct SlowRec {
    task: u32,
    nanos: u64,
    /// Index of the first item in its job.
    index: u64,
    items: u32,
    pid: u32,
    /// The encoded input, when one item was timed and it is small enough.
    input: Option<Vec<u8>>,
}

/// A worker slot's figures, over all the workers it has had.
#[derive(Debug)]
pub(crate) struct SlotStats {
    restarts: u32,
    init: Option<Duration>,
    tasks: u64,
    busy_nanos: u64,
    codec_nanos: u64,
    io_nanos: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Time its past workers were up (ready to their end).
    alive_before: Duration,
    /// When the current worker became ready.
    ready_since: Option<Instant>,
    slowest: Vec<SlowRec>,
}

impl Default for SlotStats {
    fn default() -> Self {
        SlotStats {
            restarts: 0,
            init: None,
            tasks: 0,
            busy_nanos: 0,
            codec_nanos: 0,
            io_nanos: 0,
            bytes_in: 0,
            bytes_out: 0,
            alive_before: Duration::ZERO,
            ready_since: None,
            slowest: Vec::new(),
        }
    }
}

impl SlotStats {
    /// A replacement worker was asked for.
    pub(crate) fn restarted(&mut self) {
        self.restarts += 1;
    }

    /// The worker asked for at `spawned` said it is ready.
    pub(crate) fn ready(&mut self, spawned: Instant) {
        let now = Instant::now();
        self.init = Some(now - spawned);
        self.ready_since = Some(now);
    }

    /// The worker is gone.
    pub(crate) fn ended(&mut self) {
        self.init = None;
        if let Some(since) = self.ready_since.take() {
            self.alive_before += since.elapsed();
        }
    }

    pub(crate) fn sent(&mut self, bytes: usize) {
        self.bytes_in += bytes as u64;
    }

    pub(crate) fn received(&mut self, bytes: usize) {
        self.bytes_out += bytes as u64;
    }

    /// A `Done` for `count` items that took `nanos`, with the worker's tally.
    pub(crate) fn done(&mut self, count: u32, nanos: u64, codec_nanos: u64, io_nanos: u64) {
        self.tasks += count as u64;
        self.busy_nanos += nanos;
        self.codec_nanos += codec_nanos;
        self.io_nanos += io_nanos;
    }

    /// A slow item (or chunk) reported by worker `pid`: item `index` of
    /// its job (the first of `items`), its encoded input if one.
    pub(crate) fn slow(
        &mut self,
        task: u32,
        (index, items, nanos): (u64, u32, u64),
        pid: u32,
        input: Option<&[u8]>,
    ) {
        if self.slowest.len() == SLOWEST && self.slowest.iter().all(|r| r.nanos >= nanos) {
            return;
        }
        self.slowest.push(SlowRec {
            task,
            nanos,
            index,
            items,
            pid,
            input: input.filter(|b| b.len() <= INPUT_CAP).map(<[u8]>::to_vec),
        });
        self.slowest.sort_by_key(|r| std::cmp::Reverse(r.nanos));
        self.slowest.truncate(SLOWEST);
    }

    /// A copy, to be turned into [`WorkerInsights`] outside the driver's lock.
    pub(crate) fn snapshot(&self, slot: usize, pid: Option<u32>, generation: u32) -> Snapshot {
        let alive = self.alive_before + self.ready_since.map_or(Duration::ZERO, |s| s.elapsed());
        Snapshot {
            slot,
            pid,
            generation,
            alive,
            stats: SlotStats {
                ready_since: None,
                slowest: self.slowest.clone(),
                ..*self
            },
        }
    }
}

/// A slot's figures copied under the driver's lock.
#[derive(Debug)]
pub(crate) struct Snapshot {
    slot: usize,
    pid: Option<u32>,
    generation: u32,
    alive: Duration,
    stats: SlotStats,
}

/// Turns the slots' snapshots into the public report; runs the inputs'
/// `Debug` (user code), so never under the driver's lock.
pub(crate) fn report(snapshots: Vec<Snapshot>, duplicates: u64) -> Insights {
    let workers: Vec<WorkerInsights> = snapshots
        .into_iter()
        .map(|s| {
            let st = s.stats;
            let busy = Duration::from_nanos(st.busy_nanos);
            let io = Duration::from_nanos(st.io_nanos);
            WorkerInsights {
                slot: s.slot,
                pid: s.pid,
                generation: s.generation,
                restarts: st.restarts,
                init: st.init,
                tasks: st.tasks,
                busy,
                idle: s.alive.saturating_sub(busy + io),
                codec: Duration::from_nanos(st.codec_nanos),
                io,
                bytes_in: st.bytes_in,
                bytes_out: st.bytes_out,
                slowest: st
                    .slowest
                    .into_iter()
                    .map(|r| slow_task(s.slot, r))
                    .collect(),
            }
        })
        .collect();
    let mut slowest: Vec<SlowTask> = workers.iter().flat_map(|w| w.slowest.clone()).collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.time));
    slowest.truncate(SLOWEST);
    Insights {
        workers,
        slowest,
        duplicates,
    }
}

fn slow_task(slot: usize, r: SlowRec) -> SlowTask {
    let entry = registry::task_at(r.task);
    let debug = match (&r.input, entry) {
        (Some(bytes), Some(entry)) if r.items == 1 => {
            // `Debug` is user code: a panic in it costs the text, not the report.
            std::panic::catch_unwind(|| (entry.debug_input)(bytes))
                .ok()
                .flatten()
        }
        _ => None,
    };
    let input = match debug {
        Some(mut text) => {
            if let Some((cut, _)) = text.char_indices().nth(DEBUG_CAP) {
                text.truncate(cut);
                text.push('…');
            }
            SlowInput::Debug(text)
        }
        None if r.items == 1 => SlowInput::Index(r.index),
        None => SlowInput::Range {
            first: r.index,
            count: r.items,
        },
    };
    SlowTask {
        task: entry.map_or("?", |e| e.name),
        time: Duration::from_nanos(r.nanos),
        input,
        slot,
        pid: r.pid,
    }
}

// ----- the public report --------------------------------------------------------

/// What the pool's workers have done so far: [`Pool::insights`](crate::Pool::insights).
///
/// Its `Display` is a compact table, one row per worker slot and one of
/// totals (`all`), followed by the slowest tasks:
///
/// ```text
/// slot      pid restarts      init      tasks      busy      idle     codec        io   bytes in  bytes out
///    0    19387        0    2.0 ms         13   14.2 ms   44.5 ms     34 µs     34 µs      286 B      844 B
///    1    19388        0    2.5 ms          7   56.8 ms    1.4 ms     34 µs     65 µs      154 B      474 B
///  all                 0                   20   71.0 ms   45.9 ms     68 µs     99 µs      440 B     1.3 KiB
/// slowest:
///     50.1 ms  slot 1 pid 19388  my_crate::nap(7)
///      1.1 ms  slot 1 pid 19388  my_crate::nap(9)
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Insights {
    /// One entry per worker slot, in slot order.
    pub workers: Vec<WorkerInsights>,
    /// The slowest items of the whole pool, slowest first (at most five).
    pub slowest: Vec<SlowTask>,
    /// Outcomes dropped because their input had one already: a Redis
    /// pool runs an input again when its host is taken for dead, and keeps
    /// the first outcome; the outcomes of a host that comes back after
    /// its lease lapsed, for batches given to another, are dropped and
    /// counted too (always 0 for a local pool).
    pub duplicates: u64,
}

impl Insights {
    /// Items run by all workers (results and errors alike).
    pub fn tasks(&self) -> u64 {
        self.workers.iter().map(|w| w.tasks).sum()
    }

    /// Time all workers spent running batches.
    pub fn busy(&self) -> Duration {
        self.workers.iter().map(|w| w.busy).sum()
    }

    /// Workers started to replace one that ended, over all slots.
    pub fn restarts(&self) -> u64 {
        self.workers.iter().map(|w| w.restarts as u64).sum()
    }
}

/// One worker slot's figures, summed over every worker it has had (a dead
/// or recycled worker is replaced in its slot), except `pid`, `generation`
/// and `init`, which are the current worker's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerInsights {
    /// The slot's index, as in [`WorkerInfo::index`](crate::WorkerInfo).
    pub slot: usize,
    /// The current worker's process id; `None` while no worker runs in the
    /// slot, and on a Redis pool, whose slots are the driver's windows onto
    /// its hosts' workers.
    pub pid: Option<u32>,
    /// The current worker's generation: 0 for the first one, then one more
    /// per replacement (as in [`WorkerInfo`](crate::WorkerInfo)).
    pub generation: u32,
    /// Workers started in this slot to replace one that died, timed out or
    /// was recycled.
    pub restarts: u32,
    /// The current worker's start: from the driver asking for it to its
    /// init having succeeded (the fork and the init). `None` before that.
    pub init: Option<Duration>,
    /// Items run (results, panics and codec errors alike).
    pub tasks: u64,
    /// Time spent running batches: decoding inputs, calling the task,
    /// encoding outcomes.
    pub busy: Duration,
    /// Time the slot's workers were up and ready but not busy and not
    /// writing: waiting for work (or for the driver to read).
    pub idle: Duration,
    /// The part of `busy` spent decoding inputs and encoding outcomes. For
    /// cheap items it is measured on one chunk of 64 items in 8 and
    /// extrapolated to the others (two clock reads per chunk cost more than
    /// such items do).
    pub codec: Duration,
    /// Time spent writing result frames to the driver (not in `busy`).
    pub io: Duration,
    /// Bytes sent to the slot's workers (whole frames).
    pub bytes_in: u64,
    /// Bytes received from them (whole frames).
    pub bytes_out: u64,
    /// The slot's slowest items, slowest first (at most five).
    pub slowest: Vec<SlowTask>,
}

/// One of the slowest items.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SlowTask {
    /// The task's stable name, `module::path::fn_name`.
    pub task: &'static str,
    /// How long the call took (without decoding and encoding).
    pub time: Duration,
    /// Which input it was.
    pub input: SlowInput,
    /// The worker slot that ran it.
    pub slot: usize,
    /// The process id of the worker that ran it (0 on a Redis pool: it ran
    /// on a host).
    pub pid: u32,
}

/// How a slow item's input is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowInput {
    /// The input's `Debug` text (cut at 200 characters), when its type
    /// implements `Debug` and its encoding is at most 4 KiB.
    Debug(String),
    /// Its position among the inputs of its `map`/`imap` call (0 for
    /// `apply`), when it has no `Debug` or is larger.
    Index(u64),
    /// Items of cheap tasks are timed per chunk, not one by one: these
    /// `count` inputs, from position `first`, took `time` together.
    Range {
        /// Position of the first input of the chunk.
        first: u64,
        /// Inputs in the chunk.
        count: u32,
    },
}

impl fmt::Display for SlowInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlowInput::Debug(text) => f.write_str(text),
            SlowInput::Index(i) => write!(f, "#{i}"),
            SlowInput::Range { first, count } => {
                write!(f, "#{first}..#{} together", first + *count as u64)
            }
        }
    }
}

/// `1.2 s`, `15.0 ms`, `830 µs`, `120 ns`.
struct Dur(Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.as_nanos() as f64;
        let text = if n >= 1e9 {
            format!("{:.1} s", n / 1e9)
        } else if n >= 1e6 {
            format!("{:.1} ms", n / 1e6)
        } else if n >= 1e3 {
            format!("{:.0} µs", n / 1e3)
        } else {
            format!("{n:.0} ns")
        };
        f.pad(&text)
    }
}

/// `512 B`, `3.4 KiB`, `1.2 MiB`, `2.0 GiB`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0 as f64;
        let text = if n >= (1u64 << 30) as f64 {
            format!("{:.1} GiB", n / (1u64 << 30) as f64)
        } else if n >= (1u64 << 20) as f64 {
            format!("{:.1} MiB", n / (1u64 << 20) as f64)
        } else if n >= 1024.0 {
            format!("{:.1} KiB", n / 1024.0)
        } else {
            format!("{n} B")
        };
        f.pad(&text)
    }
}

impl fmt::Display for Insights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>4} {:>8} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "slot",
            "pid",
            "restarts",
            "init",
            "tasks",
            "busy",
            "idle",
            "codec",
            "io",
            "bytes in",
            "bytes out"
        )?;
        for w in &self.workers {
            let pid = w.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
            let init = w
                .init
                .map_or_else(|| "-".to_string(), |d| Dur(d).to_string());
            writeln!(
                f,
                "{:>4} {:>8} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
                w.slot,
                pid,
                w.restarts,
                init,
                w.tasks,
                Dur(w.busy),
                Dur(w.idle),
                Dur(w.codec),
                Dur(w.io),
                Bytes(w.bytes_in),
                Bytes(w.bytes_out),
            )?;
        }
        if self.workers.len() > 1 {
            let sum = |d: fn(&WorkerInsights) -> Duration| self.workers.iter().map(d).sum();
            let bytes = |b: fn(&WorkerInsights) -> u64| self.workers.iter().map(b).sum();
            writeln!(
                f,
                "{:>4} {:>8} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
                "all",
                "",
                self.restarts(),
                "",
                self.tasks(),
                Dur(self.busy()),
                Dur(sum(|w| w.idle)),
                Dur(sum(|w| w.codec)),
                Dur(sum(|w| w.io)),
                Bytes(bytes(|w| w.bytes_in)),
                Bytes(bytes(|w| w.bytes_out)),
            )?;
        }
        if self.duplicates > 0 {
            writeln!(f, "duplicates dropped: {}", self.duplicates)?;
        }
        if !self.slowest.is_empty() {
            writeln!(f, "slowest:")?;
            for s in &self.slowest {
                writeln!(
                    f,
                    "  {:>9}  slot {} pid {}  {}({})",
                    Dur(s.time),
                    s.slot,
                    s.pid,
                    s.task,
                    s.input
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_reports_only_what_may_enter_the_list() {
        let mut t = WorkerTally::default();
        for (i, n) in [10, 20, 30, 40, 50].into_iter().enumerate() {
            t.offer(i as u32, 1, n);
        }
        assert_eq!(t.pending.len(), 5);
        t.reported();
        t.offer(5, 1, 5); // slower than none of the five
        t.offer(6, 64, 99_999); // a cheap chunk under the floor
        assert!(t.pending.is_empty());
        t.offer(7, 1, 45);
        t.offer(8, 64, RANGE_FLOOR_NANOS);
        assert_eq!(t.pending, vec![(7, 1, 45), (8, 64, RANGE_FLOOR_NANOS)]);
    }

    #[test]
    fn the_driver_keeps_the_slowest_first() {
        let mut s = SlotStats::default();
        for (i, n) in [5u64, 1, 9, 3, 7, 8, 2].into_iter().enumerate() {
            s.slow(u32::MAX, (i as u64, 1, n), 1, None);
        }
        let times: Vec<u64> = s.slowest.iter().map(|r| r.nanos).collect();
        assert_eq!(times, vec![9, 8, 7, 5, 3]);
        let report = report(vec![s.snapshot(0, Some(1), 0)], 0);
        assert_eq!(report.slowest[0].input, SlowInput::Index(2));
        assert_eq!(report.slowest[0].task, "?");
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(Dur(Duration::from_nanos(120)).to_string(), "120 ns");
        assert_eq!(Dur(Duration::from_micros(830)).to_string(), "830 µs");
        assert_eq!(Dur(Duration::from_millis(15)).to_string(), "15.0 ms");
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(3 << 20).to_string(), "3.0 MiB");
    }
}
