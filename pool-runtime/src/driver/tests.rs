//! The jobs layer alone: a [`Core`] over a scripted transport, with the test
//! playing the worker on the other end of each channel. No process is
//! forked: what the driver does with batches, outcomes and deaths does not
//! depend on how workers start.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::unistd::Pid;

use super::*;
use crate::channel::control::Exit;
use crate::channel::frame::{self, PREFIX};
use crate::channel::message::write;
use crate::channel::outcome::{self, Status};
use crate::channel::{item, message::Message};
use crate::error::ErrorKind;
use crate::sys::Phase;
use crate::transport::Position;

/// What the scripted transport was asked, and what it will report.
#[derive(Debug, Default)]
struct Script {
    /// `(slot, generation)` of each start, and the worker's end of its channel.
    started: Vec<(usize, u32, Option<UnixStream>)>,
    events: Vec<Event>,
    killed: Vec<Pid>,
    positions: HashMap<usize, Position>,
    /// `(slot, tag)` of batches the worker has claimed: not taken back.
    claimed: Vec<(usize, u64)>,
}

#[derive(Debug, Clone, Default)]
struct Scripted(Arc<Mutex<Script>>);

impl Transport for Scripted {
    fn start(
        &mut self,
        slot: usize,
        generation: u32,
        channel: &OwnedFd,
        _: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Option<crate::channel::ring::RingMap>, String> {
        let theirs = UnixStream::from(channel.try_clone().map_err(|e| e.to_string())?);
        theirs.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut s = self.0.lock().unwrap();
        s.started.push((slot, generation, Some(theirs)));
        Ok(None)
    }
    fn kill(&self, pid: Pid) {
        self.0.lock().unwrap().killed.push(pid);
    }
    fn events_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    fn read_events(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.0.lock().unwrap().events);
    }
    fn position(&self, slot: usize) -> Position {
        self.0.lock().unwrap().positions.get(&slot).copied().flatten()
    }
    fn take_position(&self, slot: usize) -> Position {
        self.0.lock().unwrap().positions.remove(&slot).flatten()
    }
    fn take_back(&self, slot: usize, tag: u64) -> bool {
        !self.0.lock().unwrap().claimed.contains(&(slot, tag))
    }
    fn is_lost(&self) -> bool {
        false
    }
    fn shutdown(&mut self, _: Duration) {}
}

fn config(workers: usize, retries: u32) -> Config {
    Config {
        workers,
        max_frame: 1 << 20,
        chunk_size: None,
        shutdown_grace: Duration::ZERO,
        respawn_limit: 3,
        retries,
        task_timeout: None,
        init_timeout: None,
        recycle: Default::default(),
        idle_spin: crate::driver::IDLE_SPIN,
    }
}

/// A driver of one slot whose worker (pid 4242) is ready; the test holds
/// the worker's end of its channel.
fn ready_driver(retries: u32) -> (Driver, Scripted, UnixStream) {
    let (driver, script, mut workers) = ready_drivers(1, retries);
    (driver, script, workers.remove(0))
}

/// A driver of `n` slots whose workers (pids 4242, 4243, …) are ready, and
/// the workers' ends of their channels.
fn ready_drivers(n: usize, retries: u32) -> (Driver, Scripted, Vec<UnixStream>) {
    let script = Scripted::default();
    let driver = Driver::new(
        Box::new(script.clone()),
        sleep::Sleep::new().unwrap(),
        config(n, retries),
    );
    let mut workers = Vec::new();
    for slot in 0..n {
        let mut worker = {
            let mut core = driver.lock();
            core.spawn(slot);
            let worker = script.0.lock().unwrap().started[slot].2.take().unwrap();
            script.0.lock().unwrap().events.push(Event::Started {
                slot,
                pid: Pid::from_raw(4242 + slot as i32),
            });
            core.handle_transport();
            worker
        };
        let mut ready = Vec::new();
        write::ready(&mut ready);
        worker.write_all(&ready).unwrap();
        driver.lock().read_slot(slot);
        workers.push(worker);
    }
    assert_eq!(driver.lock().ready_slots(), (0..n).collect::<Vec<_>>());
    (driver, script, workers)
}

/// A `Run` batch of `inputs` for task 7, as the caller's thread encodes it.
fn batch(job: JobId, inputs: &[u64]) -> NewBatch {
    let mut frame = Vec::new();
    let start = write::run(&mut frame, 0, 7, inputs.len() as u32);
    let mut offsets = Vec::new();
    for input in inputs {
        offsets.push(frame.len() as u32);
        item::write(&mut frame, 0, input, &mut false).unwrap();
    }
    frame::finish(&mut frame, start, usize::MAX).unwrap();
    NewBatch {
        job,
        task: 7,
        first: 0,
        count: inputs.len() as u32,
        frame,
        offsets,
        attempts: 0,
        strays: 0,
    }
}

/// The next frame the worker receives: its tag, task and inputs.
fn receive_run(worker: &mut UnixStream) -> (u64, u32, Vec<u64>) {
    let mut prefix = [0; PREFIX];
    worker.read_exact(&mut prefix).unwrap();
    let mut frame = prefix.to_vec();
    frame.resize(PREFIX + u32::from_le_bytes(prefix) as usize, 0);
    worker.read_exact(&mut frame[PREFIX..]).unwrap();
    let Ok(Message::Run {
        tag,
        task,
        count,
        body,
    }) = Message::parse_frame(&frame)
    else {
        panic!("not a Run frame: {frame:?}");
    };
    let mut inputs = Vec::new();
    let mut items = item::Items::new(body);
    for _ in 0..count {
        let (_, value) = items.next_item().unwrap();
        inputs.push(item::decode::<u64>(value).unwrap());
    }
    (tag, task, inputs)
}

/// The worker's `Done` for items `first ..` of batch `tag`.
fn send_done(worker: &mut UnixStream, tag: u64, first: u32, outputs: &[u64]) {
    let mut frame = Vec::new();
    let start = write::done(&mut frame, tag, first, outputs.len() as u32);
    for output in outputs {
        outcome::write(&mut frame, Status::Ok, output, &mut false);
    }
    write::finish_tally(&mut frame, start, 0, 0, &[]);
    frame::finish(&mut frame, start, usize::MAX).unwrap();
    worker.write_all(&frame).unwrap();
}

/// The job's outcomes so far, by job index.
fn outcomes(core: &mut Core, job: JobId) -> Vec<(u64, Result<u64, ErrorKind>)> {
    let mut got = VecDeque::new();
    core.take_completions(job, &mut got);
    let mut all = Vec::new();
    for c in got {
        match c {
            Completion::Items {
                first,
                count,
                frame,
                body,
                ..
            } => {
                let mut index = first;
                outcome::read_each::<u64>(&mut item::Items::new(&frame[body..]), count, |r| {
                    all.push((index, r.map_err(|e| e.kind().clone())));
                    index += 1;
                    true
                })
                .unwrap();
            }
            Completion::Failed { index, error } => all.push((index, Err(error.kind().clone()))),
        }
    }
    all
}

#[test]
fn a_batch_goes_to_the_ready_worker_and_its_outcomes_to_its_job() {
    let (driver, _script, mut worker) = ready_driver(0);
    let mut core = driver.lock();
    let job = core.new_job();
    core.submit(batch(job, &[10, 20, 30]), None);
    core.dispatch();
    let (tag, task, inputs) = receive_run(&mut worker);
    assert_eq!((task, inputs), (7, vec![10, 20, 30]));
    // Two `Done`s for one batch, as a long batch's flushes are.
    send_done(&mut worker, tag, 0, &[100]);
    send_done(&mut worker, tag, 1, &[200, 300]);
    core.read_slot(0);
    assert_eq!(
        outcomes(&mut core, job),
        vec![(0, Ok(100)), (1, Ok(200)), (2, Ok(300))]
    );
    assert!(core.slots[0].inflight.is_empty(), "the batch is over");
}

#[test]
fn outcomes_out_of_sequence_are_a_protocol_error_and_the_worker_is_killed() {
    let (driver, script, mut worker) = ready_driver(0);
    let mut core = driver.lock();
    let job = core.new_job();
    core.submit(batch(job, &[1, 2]), None);
    core.dispatch();
    let (tag, _, _) = receive_run(&mut worker);
    send_done(&mut worker, tag, 1, &[2]);
    core.read_slot(0);
    assert_eq!(script.0.lock().unwrap().killed, vec![Pid::from_raw(4242)]);
    assert!(matches!(core.slots[0].state, SlotState::Dead { .. }));
}

#[test]
fn a_death_fails_the_item_it_was_at_and_runs_the_rest_on_its_replacement() {
    let (driver, script, mut worker) = ready_driver(0);
    let mut core = driver.lock();
    let job = core.new_job();
    core.submit(batch(job, &[1, 2, 3]), None);
    core.dispatch();
    let (tag, _, _) = receive_run(&mut worker);
    send_done(&mut worker, tag, 0, &[10]);
    core.read_slot(0);
    // The worker dies in item 1's task: its channel closes, the transport
    // reports a SIGKILL.
    script
        .0
        .lock()
        .unwrap()
        .positions
        .insert(0, Some((tag, Some((1, Phase::Run)))));
    drop(worker);
    script.0.lock().unwrap().events.push(Event::Ended {
        pid: Pid::from_raw(4242),
        exit: Exit::Signal(9),
    });
    core.handle_transport();
    let got = outcomes(&mut core, job);
    assert_eq!(got[0], (0, Ok(10)));
    let (1, Err(ErrorKind::WorkerDied(why))) = &got[1] else {
        panic!("item 1 should have died with its worker: {got:?}");
    };
    assert!(why.contains("killed by signal 9 (SIGKILL)"), "{why}");
    assert_eq!(got.len(), 2, "item 2 waits for the next worker: {got:?}");
    // Its replacement was asked for, and item 2 alone waits in the queue.
    let started: Vec<(usize, u32)> = script
        .0
        .lock()
        .unwrap()
        .started
        .iter()
        .map(|(slot, generation, _)| (*slot, *generation))
        .collect();
    assert_eq!(started, vec![(0, 0), (0, 1)]);
    let queued = core.queue.front().map(|t| &core.batches[t]);
    assert!(
        matches!(queued, Some(b) if b.first == 2 && b.count == 1),
        "{:?}",
        core.queue
    );
}

#[test]
fn a_lost_transport_fails_what_waits_and_breaks_the_pool() {
    let script = Scripted::default();
    let driver = Driver::new(
        Box::new(script.clone()),
        sleep::Sleep::new().unwrap(),
        config(1, 0),
    );
    let mut core = driver.lock();
    let job = core.new_job();
    core.submit(batch(job, &[1]), None);
    script
        .0
        .lock()
        .unwrap()
        .events
        .push(Event::Lost("the fork server died".into()));
    core.handle_transport();
    let got = outcomes(&mut core, job);
    assert!(
        matches!(&got[..], [(0, Err(ErrorKind::PoolBroken(m)))] if m == "the fork server died"),
        "{got:?}"
    );
}

#[test]
fn a_split_batch_is_a_whole_run_frame_of_its_own_inputs() {
    let (driver, _script, mut worker) = ready_driver(0);
    let mut core = driver.lock();
    let job = core.new_job();
    // A long input among short ones: item lengths differ.
    let inputs = [1, u64::MAX, 3, 4];
    core.submit(batch(job, &inputs), None);
    let tag = *core.queue.front().unwrap();
    let piece = core.batches[&tag].clone_range(1, 3).unwrap();
    assert_eq!((piece.first, piece.count, piece.task), (1, 2, 7));
    assert_eq!(piece.offsets.len(), 2);
    for (k, &at) in piece.offsets.iter().enumerate() {
        let (_, value, _) = item::read(&piece.frame[at as usize..]).unwrap();
        assert_eq!(item::decode::<u64>(value).unwrap(), inputs[1 + k]);
    }
    assert!(core.batches[&tag].clone_range(2, 2).is_none(), "empty range");
    // Inputs in a dense run (as the pool writes `u64`s under postcard's
    // codec; bincode's writes none): each comes back an ordinary item.
    if crate::codec::fixed_width::<u64>() == Some(8) {
        let mut dense = batch(job, &[]);
        let head = dense.frame.len();
        let run = item::begin_dense(&mut dense.frame, 8);
        for input in inputs {
            dense.frame.extend_from_slice(&input.to_le_bytes());
            dense.offsets.push(head as u32);
        }
        item::end_dense(&mut dense.frame, run);
        dense.count = inputs.len() as u32;
        message::write::patch_run_count(&mut dense.frame, 0, dense.count);
        frame::finish(&mut dense.frame, 0, usize::MAX).unwrap();
        core.submit(dense, None);
        let dense_tag = *core.queue.back().unwrap();
        let cut = core.batches[&dense_tag].clone_range(1, 4).unwrap();
        assert_eq!((cut.first, cut.count), (1, 3));
        for (k, &at) in cut.offsets.iter().enumerate() {
            let (_, value, _) = item::read(&cut.frame[at as usize..]).unwrap();
            assert_eq!(item::decode::<u64>(value).unwrap(), inputs[1 + k]);
        }
        let Ok(Message::Run { count, body, .. }) = Message::parse_frame(&cut.frame) else {
            panic!("not a Run frame");
        };
        assert_eq!((count, item::split(body, 3).unwrap().1.len()), (3, 0));
    }
    // The piece travels as a batch of its own.
    core.abandon(job);
    let job = core.new_job();
    core.submit(NewBatch { job, ..piece }, None);
    core.dispatch();
    let (_, task, got) = receive_run(&mut worker);
    assert_eq!((task, got), (7, vec![u64::MAX, 3]));
}

#[test]
fn an_abandoned_jobs_queued_batches_never_run_and_its_record_goes() {
    let (driver, _script, mut worker) = ready_driver(0);
    let mut core = driver.lock();
    let dropped = core.new_job();
    // Queued while the worker is busy with two (DEPTH) batches of another job.
    let kept = core.new_job();
    core.submit(batch(kept, &[1]), None);
    core.submit(batch(kept, &[2]), None);
    core.dispatch();
    for x in [3, 4, 5] {
        core.submit(batch(dropped, &[x]), None);
    }
    core.submit(batch(kept, &[6]), None);
    core.abandon(dropped);
    // The worker answers its two batches; the abandoned ones are skipped.
    for _ in 0..2 {
        let (tag, _, inputs) = receive_run(&mut worker);
        send_done(&mut worker, tag, 0, &inputs);
    }
    core.read_slot(0);
    core.dispatch();
    let (_, _, next) = receive_run(&mut worker);
    assert_eq!(next, vec![6], "the abandoned job's inputs never run");
    assert!(!core.jobs.contains_key(&dropped), "its record is gone");
    assert!(core.queue.is_empty());
}

#[test]
fn a_worker_started_after_terminate_is_killed_and_not_replaced() {
    let script = Scripted::default();
    let driver = Driver::new(
        Box::new(script.clone()),
        sleep::Sleep::new().unwrap(),
        config(1, 0),
    );
    let mut core = driver.lock();
    core.spawn(0);
    core.terminate();
    // Its pid arrives only now.
    script.0.lock().unwrap().events.push(Event::Started {
        slot: 0,
        pid: Pid::from_raw(777),
    });
    core.handle_transport();
    assert_eq!(script.0.lock().unwrap().killed, vec![Pid::from_raw(777)]);
    script.0.lock().unwrap().events.push(Event::Ended {
        pid: Pid::from_raw(777),
        exit: Exit::Signal(9),
    });
    drop(script.0.lock().unwrap().started[0].2.take());
    core.read_slot(0);
    core.handle_transport();
    assert_eq!(script.0.lock().unwrap().started.len(), 1, "no replacement");
}

#[test]
fn an_idle_worker_takes_back_the_batch_waiting_behind_a_busy_one() {
    let (driver, script, mut workers) = ready_drivers(2, 0);
    let mut core = driver.lock();
    let job = core.new_job();
    // One slot each, then the third behind the batch that started last.
    for (first, input) in [(0, 10), (1, 11), (2, 12)] {
        let mut b = batch(job, &[input]);
        b.first = first;
        core.submit(b, None);
        core.dispatch();
    }
    assert_eq!(core.slots[0].inflight.len(), 1);
    assert_eq!(core.slots[1].inflight.len(), 2);
    let (quick, _, _) = receive_run(&mut workers[0]);
    let (long, _, _) = receive_run(&mut workers[1]);
    let (waiting, _, inputs) = receive_run(&mut workers[1]);
    assert_eq!(inputs, vec![12]);
    script.0.lock().unwrap().claimed = vec![(0, quick), (1, long)];
    // Slot 0 is done and idle, the queue empty: it takes slot 1's second.
    send_done(&mut workers[0], quick, 0, &[100]);
    core.read_slot(0);
    core.dispatch();
    let (tag, _, inputs) = receive_run(&mut workers[0]);
    assert_eq!(inputs, vec![12]);
    assert_ne!(tag, waiting, "a new tag: the frame slot 1 skips never matches");
    assert_eq!(core.slots[1].inflight, [long]);
    send_done(&mut workers[0], tag, 0, &[120]);
    send_done(&mut workers[1], long, 0, &[110]);
    core.read_slot(0);
    core.read_slot(1);
    let mut got = outcomes(&mut core, job);
    got.sort_by_key(|(i, _)| *i);
    assert_eq!(got, vec![(0, Ok(100)), (1, Ok(110)), (2, Ok(120))]);
}

#[test]
fn a_claimed_batch_is_not_taken_back() {
    let (driver, script, mut workers) = ready_drivers(2, 0);
    let mut core = driver.lock();
    let job = core.new_job();
    for first in 0..2 {
        let mut b = batch(job, &[first]);
        b.first = first;
        core.submit(b, Some(0));
        core.dispatch();
    }
    let (a, _, _) = receive_run(&mut workers[0]);
    let (b, _, _) = receive_run(&mut workers[0]);
    script.0.lock().unwrap().claimed = vec![(0, a), (0, b)];
    core.dispatch();
    // Pinned, and claimed besides: both stay where they are.
    assert_eq!(core.slots[0].inflight, [a, b]);
    assert!(core.slots[1].inflight.is_empty());
}
