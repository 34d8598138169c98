//! A host's own local pool, and running entries' batches on it: a fork
//! server and forked workers that build their state from the driver's
//! greeting, driven by the same [`Driver`] as any local pool. A worker that
//! dies here is handled here, with the pool's retries and quarantine.

use std::collections::VecDeque;
use std::time::Duration;

use super::wire::HostConfig;
use crate::channel::message::{self, Message};
use crate::channel::outcome;
use crate::channel::{frame, item};
use crate::driver::{Completion, Config, Driver, NewBatch};
use crate::error::ErrorKind;
use crate::transport::fork::{ForkServer, Settings};
use crate::worker::{self, Recycle};

/// How long a host's worker may spin for its next frame. Between two
/// entries a host's worker waits for Redis round trips (100–300 µs here),
/// far longer than a local pool's worker waits for its driver, and a
/// worker that slept must be woken across cores (tens of µs on a VM): a
/// host keeps its workers spinning through that gap, yielding the CPU to
/// any thread that wants it (`worker.rs`). Measured: `apply` p50 from
/// 1.54x to 0.97x a raw Redis round trip (BENCHMARKS.md, "Issue 12, third
/// part").
const IDLE_SPIN: Duration = Duration::from_millis(1);

/// A host's workers' spin: [`IDLE_SPIN`], or the microseconds `setting`
/// (`HOST_SPIN_ENV`) says, up to `ring::MAX_SPIN`.
pub(super) fn idle_spin(setting: Option<&str>) -> Duration {
    setting
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(IDLE_SPIN, Duration::from_micros)
        .min(crate::channel::ring::MAX_SPIN)
}

/// Starts `workers` workers, each building its state from `hello`, each
/// spinning up to `spin` for its next frame.
pub(super) fn start(c: &HostConfig, (workers, spin): (usize, Duration), hello: &[u8]) -> Result<Driver, String> {
    let recycle = Recycle {
        max_tasks: c.max_tasks,
        max_rss: None,
        exit_hook: None,
    };
    let settings = Settings {
        workers,
        max_frame: c.max_frame,
        recycle: &recycle,
    };
    let sleep = crate::driver::sleep::Sleep::new().map_err(|e| e.to_string())?;
    let transport = ForkServer::start_with(settings, &|start| {
        worker::live(start, |info, _| worker::state_from_hello(hello, info))
    })
    .map_err(|e| e.to_string())?;
    let config = Config {
        workers,
        max_frame: c.max_frame,
        chunk_size: None,
        shutdown_grace: Duration::from_secs(2),
        respawn_limit: c.respawn_limit,
        retries: c.retries,
        task_timeout: c.task_timeout,
        init_timeout: c.init_timeout,
        recycle: recycle.clone(),
        idle_spin: spin,
    };
    let driver = Driver::new(Box::new(transport), sleep, config);
    match driver.start_workers() {
        Ok(()) => Ok(driver),
        Err(why) => {
            driver.shutdown(None);
            Err(why)
        }
    }
}

/// What one batch came to on the local pool.
#[derive(Debug, Default)]
pub(super) struct Ran {
    /// Its outcome items, back to back, in input order.
    pub(super) outcomes: Vec<u8>,
    /// One of them is a quarantine: an input killed its workers.
    pub(super) quarantined: bool,
    /// Time the workers spent computing it.
    pub(super) nanos: u64,
}

/// A batch's place in one local job.
struct Placed {
    frame: Vec<u8>,
    offsets: Vec<u32>,
    task: u32,
    count: u32,
}

/// Frames `payload` (a `Run` message without its prefix) for the local pool.
fn place(payload: &[u8]) -> Option<Placed> {
    let Ok(Message::Run { task, count, body, .. }) = Message::parse(payload) else {
        return None;
    };
    let mut framed = Vec::with_capacity(payload.len() + frame::PREFIX);
    let start = frame::begin(&mut framed);
    framed.extend_from_slice(payload);
    frame::finish(&mut framed, start, usize::MAX).ok()?;
    // Where the inputs start: after the header (and the chain).
    let inputs = if task == message::CHAIN {
        message::parse_chain(body).ok()?.1
    } else {
        body
    };
    // Each item's offset is where it starts, or the dense run it is in.
    let base = frame::PREFIX + payload.len() - inputs.len();
    // `count` comes from Redis: no more room than the bytes could hold
    // (every item is at least one byte).
    let mut offsets = Vec::with_capacity((count as usize).min(inputs.len()));
    let mut items = item::Items::new(inputs);
    let mut at = base;
    for _ in 0..count {
        if let Some(rest) = items.between() {
            at = base + inputs.len() - rest.len();
        }
        offsets.push(at as u32);
        items.next_item().ok()?;
    }
    Some(Placed {
        frame: framed,
        offsets,
        task,
        count,
    })
}

/// Why [`run`] has no outcomes to give.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unrun {
    /// A payload is not a well-formed `Run` (nothing was run).
    Malformed,
    /// The local pool broke before it could say.
    Broken,
}

/// Runs batches on the local pool in one job, each (a `Run` payload) on
/// the slot it names or on any worker; what each came to, in order.
pub(super) fn run(driver: &Driver, runs: &[(&[u8], Option<usize>)]) -> Result<Vec<Ran>, Unrun> {
    let placed: Vec<Placed> = runs
        .iter()
        .map(|(p, _)| place(p))
        .collect::<Option<_>>()
        .ok_or(Unrun::Malformed)?;
    run_placed(driver, runs, placed).ok_or(Unrun::Broken)
}

fn run_placed(driver: &Driver, runs: &[(&[u8], Option<usize>)], placed: Vec<Placed>) -> Option<Vec<Ran>> {
    // Each batch's first item in the job.
    let mut bases = Vec::with_capacity(placed.len());
    let mut total = 0u64;
    for p in &placed {
        bases.push(total);
        total += u64::from(p.count);
    }
    let job = {
        let mut core = driver.lock();
        let job = core.new_job();
        for ((p, &(_, slot)), &first) in placed.into_iter().zip(runs).zip(&bases) {
            let batch = NewBatch {
                job,
                task: p.task,
                first,
                count: p.count,
                frame: p.frame,
                offsets: p.offsets,
                attempts: 0,
                strays: 0,
            };
            core.submit(batch, slot);
        }
        core.dispatch();
        driver.nudge(&core);
        job
    };
    let mut outcomes: Vec<Option<Vec<u8>>> = vec![None; total as usize];
    let mut ran: Vec<Ran> = runs.iter().map(|_| Ran::default()).collect();
    let batch_of = |index: u64| bases.partition_point(|&b| b <= index) - 1;
    let mut left = total;
    let mut got = VecDeque::new();
    while left > 0 {
        let mut core = driver.wait_until(|core| core.has_completions(job));
        core.take_completions(job, &mut got);
        drop(core);
        for c in got.drain(..) {
            match c {
                Completion::Items {
                    first,
                    count,
                    nanos,
                    frame,
                    body,
                } => {
                    if first >= total {
                        return None;
                    }
                    ran[batch_of(first)].nanos += nanos;
                    let (each, _) = item::split(frame.get(body..)?, count).ok()?;
                    for (i, one) in (0..).zip(each) {
                        let slot = outcomes.get_mut((first + i) as usize)?;
                        if slot.is_none() {
                            left -= 1;
                        }
                        *slot = Some(one);
                    }
                }
                Completion::Failed { index, error } => {
                    if index >= total {
                        return None;
                    }
                    ran[batch_of(index)].quarantined |= matches!(error.kind(), ErrorKind::Quarantined(_));
                    let mut one = Vec::new();
                    outcome::write_error(&mut one, &error, &mut false);
                    let slot = outcomes.get_mut(index as usize)?;
                    if slot.is_none() {
                        left -= 1;
                    }
                    *slot = Some(one);
                }
            }
        }
    }
    driver.lock().abandon(job);
    for (i, o) in outcomes.into_iter().enumerate() {
        ran[batch_of(i as u64)].outcomes.extend(o?);
    }
    Some(ran)
}

/// Each item of a `Run` payload as a `Run` payload of its own.
pub(super) fn batch_items(payload: &[u8]) -> Option<Vec<Vec<u8>>> {
    let Ok(Message::Run { tag, task, count, body }) = Message::parse(payload) else {
        return None;
    };
    let (chain, inputs) = if task == message::CHAIN {
        let (_, inputs) = message::parse_chain(body).ok()?;
        (&body[..body.len() - inputs.len()], inputs)
    } else {
        (&body[..0], body)
    };
    let (each, _) = item::split(inputs, count).ok()?;
    let mut out = Vec::with_capacity(each.len());
    for input in each {
        let mut one = Vec::new();
        let start = message::write::run(&mut one, tag, task, 1);
        one.extend_from_slice(chain);
        one.extend_from_slice(&input);
        // The payload is the frame without its length prefix.
        one.drain(start..start + frame::PREFIX);
        out.push(one);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Run` payload (no prefix) claiming `count` inputs, with `body` after.
    fn run_payload(count: u32, body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let start = message::write::run(&mut buf, 7, 1, count);
        buf.extend_from_slice(body);
        buf.split_off(start + frame::PREFIX)
    }

    #[test]
    fn the_spin_is_the_hosts_setting_bounded_or_the_default() {
        assert_eq!(idle_spin(None), IDLE_SPIN);
        assert_eq!(idle_spin(Some("0")), Duration::ZERO);
        assert_eq!(idle_spin(Some(" 250 ")), Duration::from_micros(250));
        assert_eq!(idle_spin(Some("lots")), IDLE_SPIN);
        assert_eq!(idle_spin(Some("99999999")), crate::channel::ring::MAX_SPIN);
    }

    #[test]
    fn a_count_beyond_its_bytes_is_refused_without_a_huge_allocation() {
        // An entry anyone with access to Redis could have added: four
        // billion inputs claimed, three bytes there.
        let lie = run_payload(u32::MAX, &[0, 1, 2]);
        assert!(place(&lie).is_none());
        assert!(batch_items(&lie).is_none());
        assert!(place(&run_payload(2, &[])).is_none());
        assert!(batch_items(&run_payload(1, &[])).is_none());
    }
}
