//! Sticky routing: calls that must run on one worker slot, chosen by the
//! caller (`submit_to`) or by a key's hash (`worker_for`, `map_by_key`),
//! so that a per-key cache in the worker's state keeps being hit. A slot
//! keeps its pinned work across a respawn: the key's next worker gets it.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use super::{encode_inputs, task_index, Imap, Pool, Submitted};
use crate::channel::frame;
use crate::channel::message::write;
use crate::driver::NewBatch;
use crate::error::{Error, ErrorKind};
use crate::task::Task;

/// Batches per worker a `map_by_key` splits that worker's inputs into,
/// unless the pool has a chunk size: enough for a worker always to hold one
/// waiting, few enough that per-batch costs vanish.
const BATCHES_PER_WORKER: usize = 16;

impl<S: 'static> Pool<S> {
    /// The worker slot that `key` is routed to: the same for equal keys,
    /// for the pool's whole life (its workers' respawns included), and
    /// from one run of the program to the next with the same number of
    /// workers and the same build of Rust.
    ///
    /// ```
    /// # use pool_runtime::{worker_init, Pool};
    /// # #[worker_init] fn none(_: &()) -> u8 { 0 }
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool: Pool<u8> = Pool::builder().workers(3).build(none, ())?;
    /// let w = pool.worker_for("user-17");
    /// assert!(w < 3);
    /// assert_eq!(pool.worker_for("user-17"), w);
    /// # Ok(()) }
    /// ```
    pub fn worker_for<K: Hash + ?Sized>(&self, key: &K) -> usize {
        // Fixed keys: no per-process seed, unlike `RandomState`'s.
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.workers().max(1) as u64) as usize
    }

    /// [`submit`](Pool::submit), on worker slot `worker` only: its worker
    /// runs it, or, if that worker dies or is being replaced, the slot's
    /// next worker. A slot that can no longer start a worker fails the call
    /// with [`ErrorKind::PoolBroken`].
    ///
    /// ```
    /// use pool_runtime::{worker_init, worker_task, Pool, WorkerInfo};
    ///
    /// #[worker_init]
    /// fn slot(_: &(), info: WorkerInfo) -> usize { info.index() }
    ///
    /// #[worker_task]
    /// fn which(slot: &usize) -> usize { *slot }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(3).build(slot, ())?;
    /// assert_eq!(pool.submit_to(2, which, ()).wait()?, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// If `worker` is not below [`workers`](Pool::workers).
    pub fn submit_to<T, M>(&self, worker: usize, _task: T, input: T::Input) -> Submitted<'_, T::Output>
    where
        T: Task<S, M>,
    {
        assert!(
            worker < self.workers(),
            "submit_to: worker {worker} of a pool of {}",
            self.workers()
        );
        let job = self.driver.lock().new_job();
        let stream = match task_index::<T>()
            .and_then(|task| self.send_one(job, task, &input, &[Some(worker)]))
        {
            Ok(count) => Imap::attached(&self.driver, job, count, true),
            Err(e) => Imap::failed(&self.driver, job, e),
        };
        Submitted::new(stream)
    }

    /// [`map`](Pool::map), with every input whose `key` is equal run on
    /// the same worker slot ([`worker_for`](Pool::worker_for) of the key):
    /// a cache per key in the worker's state then stays with its key.
    /// Outputs come back in input order. Each worker's inputs run in their
    /// order; a worker's share is as large as its keys make it (a key that
    /// is most of the inputs is most of one worker's work). Unlike `map`,
    /// it takes and encodes every input before the first one runs.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use pool_runtime::{worker_init, worker_task, Pool};
    ///
    /// #[worker_init]
    /// fn cache(_: &()) -> HashMap<String, u32> { HashMap::new() }
    ///
    /// /// How many times this worker has seen the user: 1, 2, 3, …
    /// #[worker_task]
    /// fn visit(seen: &mut HashMap<String, u32>, user: String) -> u32 {
    ///     let n = seen.entry(user).or_default();
    ///     *n += 1;
    ///     *n
    /// }
    ///
    /// # fn main() -> Result<(), pool_runtime::Error> {
    /// let pool = Pool::builder().workers(2).build(cache, ())?;
    /// let users = ["ann", "bob", "ann", "cy", "ann", "bob"].map(String::from);
    /// let visits = pool.map_by_key(visit, users, |u| u.clone())?;
    /// assert_eq!(visits, vec![1, 1, 2, 1, 3, 2]); // one count per user
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The first failure in the order the workers' shares are listed in
    /// (worker 0's inputs first); or, before anything runs, an input too
    /// large to send.
    pub fn map_by_key<T, M, I, K, F>(
        &self,
        _task: T,
        inputs: I,
        key: F,
    ) -> Result<Vec<T::Output>, Error>
    where
        T: Task<S, M>,
        I: IntoIterator<Item = T::Input>,
        K: Hash,
        F: FnMut(&T::Input) -> K,
    {
        let task = task_index::<T>()?;
        let mut key = key;
        let workers = self.workers();
        // Each worker's share, in input order, with the inputs' positions.
        let mut shares: Vec<(Vec<usize>, VecDeque<T::Input>)> =
            (0..workers).map(|_| Default::default()).collect();
        for (i, x) in inputs.into_iter().enumerate() {
            let share = &mut shares[self.worker_for(&key(&x))];
            share.0.push(i);
            share.1.push_back(x);
        }
        // Encoded outside the lock (`Serialize` is user code), then queued at once.
        let mut batches = Vec::new();
        let mut first = 0u64;
        for (slot, (_, share)) in shares.iter_mut().enumerate() {
            let want = self
                .driver
                .config
                .chunk_size
                .unwrap_or(share.len().div_ceil(BATCHES_PER_WORKER))
                .clamp(1, u32::MAX as usize) as u32;
            let mut long = false;
            while !share.is_empty() {
                let mut bytes = Vec::new();
                let start = write::run(&mut bytes, 0, task, 0);
                let mut offsets = Vec::new();
                // Up to `want` inputs or `BATCH_BYTES`, whichever comes first.
                encode_inputs(&mut bytes, &mut offsets, share, want, &mut long);
                let count = offsets.len() as u32;
                write::patch_run_count(&mut bytes, start, count);
                frame::finish(&mut bytes, start, self.driver.config.max_frame).map_err(|e| {
                    Error::new(ErrorKind::Codec(format!("input too large to send: {e}")))
                })?;
                let batch = NewBatch {
                    job: 0,
                    task,
                    first,
                    count,
                    frame: bytes,
                    offsets,
                    attempts: 0,
                    strays: 0,
                };
                batches.push((batch, slot));
                first += count as u64;
            }
        }
        let job = {
            let mut core = self.driver.lock();
            let job = core.new_job();
            for (mut batch, slot) in batches {
                batch.job = job;
                core.submit(batch, Some(slot));
            }
            core.dispatch();
            self.driver.nudge(&core);
            job
        };
        let outputs = Imap::<std::iter::Empty<T::Input>, T::Output>::attached(
            &self.driver,
            job,
            first,
            true,
        )
        .collect_vec()?;
        // Back from the workers' order to the inputs'.
        let mut slots: Vec<Option<T::Output>> = (0..first).map(|_| None).collect();
        let positions = shares.iter().flat_map(|(at, _)| at.iter().copied());
        for (at, out) in positions.zip(outputs) {
            slots[at] = Some(out);
        }
        Ok(slots.into_iter().map(|o| o.expect("one output per input")).collect())
    }
}
