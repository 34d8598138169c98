//! [`Pipeline`]: tasks chained on one pool, checked at compile time and run
//! fused in the worker, so the values between stages never leave it.

use std::fmt::Display;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::message::{self, Route, Stage};
use crate::error::Error;
use crate::pool::{task_index, Imap, Pool};
use crate::task::Task;

/// Markers telling how one stage feeds the next. Never named by callers.
pub mod feed {
    /// The next stage takes the previous stage's output as it is.
    #[derive(Debug)]
    pub struct Whole;
    /// The next stage takes the `Ok` side of the previous stage's `Result`.
    #[derive(Debug)]
    pub struct OkSide;
}

/// An output type that can feed a stage taking `T`: `T` itself, or a
/// `Result<T, E>` whose `Err` ends the input's run with `E`'s `Display`.
#[diagnostic::on_unimplemented(
    message = "a stage returning `{Self}` cannot feed a stage that takes `{T}`",
    label = "this stage takes `{T}`",
    note = "each stage takes the previous stage's output, or `T` when the previous stage returns `Result<T, E>` with `E: Display` (an `Err` then ends that input's run)"
)]
pub trait Feeds<T, V> {
    /// Whether the next stage takes the `Ok` side.
    const OK_SIDE: bool;
}

impl<T> Feeds<T, feed::Whole> for T {
    const OK_SIDE: bool = false;
}

impl<T, E: Display> Feeds<T, feed::OkSide> for Result<T, E> {
    const OK_SIDE: bool = true;
}

/// Tasks chained on one pool: each input runs every stage in the same
/// worker, one after the other, so only the first stage's input and the last
/// stage's output cross between processes.
///
/// Built by [`Pool::pipeline`] and [`then`](Pipeline::then). Each stage is a
/// `#[worker_task]` on the pool's state (or stateless) whose input is the
/// previous stage's output; a stage returning `Result<T, E>` (with
/// `E: Display`) may feed a stage taking `T`, and its `Err` ends that input
/// with [`ErrorKind::Failed`](crate::ErrorKind::Failed), like `?` would. Both rules are checked at
/// compile time.
///
/// Every stage is a task in its own right, usable with [`Pool::map`], so its
/// argument and result types are serde types (above, the error is a
/// `String`), even though a pipeline never sends the values between stages.
///
/// ```
/// use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};
///
/// struct Scale(u64);
///
/// #[worker_init]
/// fn start(k: &u64) -> Scale { Scale(*k) }
///
/// #[worker_task]
/// fn parse(line: String) -> Result<u64, String> {
///     line.trim().parse().map_err(|e| format!("{line:?}: {e}"))
/// }
///
/// #[worker_task]
/// fn scale(s: &Scale, x: u64) -> u64 { s.0 * x }
///
/// #[worker_task]
/// fn show(x: u64) -> String { format!("<{x}>") }
///
/// # fn main() -> Result<(), pool_runtime::Error> {
/// let pool = Pool::builder().workers(2).build(start, 10)?;
/// let chain = pool.pipeline(parse).then(scale).then(show);
/// assert_eq!(chain.map(vec!["1".into(), " 2".into()])?, ["<10>", "<20>"]);
///
/// let outcomes: Vec<_> = chain.imap(vec!["3".to_string(), "x".into()]).collect();
/// assert_eq!(outcomes[0].as_deref().unwrap(), "<30>");
/// assert!(matches!(outcomes[1].as_ref().unwrap_err().kind(), ErrorKind::Failed(_)));
/// # Ok(()) }
/// ```
pub struct Pipeline<'p, S, In, Out> {
    pool: &'p Pool<S>,
    stages: Vec<Stage>,
    error: Option<Error>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<S, In, Out> std::fmt::Debug for Pipeline<'_, S, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stages", &self.stages.len())
            .finish_non_exhaustive()
    }
}

impl<S: 'static> Pool<S> {
    /// Starts a [`Pipeline`] with `first` as its first stage; add stages with
    /// [`then`](Pipeline::then).
    pub fn pipeline<T, M>(&self, first: T) -> Pipeline<'_, S, T::Input, T::Output>
    where
        T: Task<S, M>,
    {
        let _ = first;
        let mut p = Pipeline {
            pool: self,
            stages: Vec::new(),
            error: None,
            _types: PhantomData,
        };
        p.push::<T>(false);
        p
    }
}

impl<'p, S: 'static, In, Out> Pipeline<'p, S, In, Out> {
    /// Adds `next` as the last stage: it takes this pipeline's output, or the
    /// `Ok` side of it when the output is a `Result` and `next` takes what is
    /// inside.
    ///
    /// # Panics
    ///
    /// Past 64 stages.
    pub fn then<T, M, V>(mut self, next: T) -> Pipeline<'p, S, In, T::Output>
    where
        T: Task<S, M>,
        Out: Feeds<T::Input, V>,
    {
        let _ = next;
        if let Some(last) = self.stages.last_mut() {
            last.1 = <Out as Feeds<T::Input, V>>::OK_SIDE;
        }
        self.push::<T>(false);
        Pipeline {
            pool: self.pool,
            stages: self.stages,
            error: self.error,
            _types: PhantomData,
        }
    }

    fn push<T: 'static>(&mut self, ok_side: bool) {
        assert!(
            self.stages.len() < message::MAX_STAGES,
            "a pipeline has at most {} stages",
            message::MAX_STAGES
        );
        match task_index::<T>() {
            Ok(t) => self.stages.push((t, ok_side)),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// How many stages the pipeline has.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Always `false`: a pipeline starts with one stage.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    fn route(&self) -> Result<Route, Error> {
        match &self.error {
            Some(e) => Err(Error::new(e.kind().clone())),
            None if self.stages.len() == 1 => Ok(Route::Task(self.stages[0].0)),
            None => Ok(Route::Chain(self.stages.clone().into())),
        }
    }
}

impl<'p, S: 'static, In, Out> Pipeline<'p, S, In, Out>
where
    In: Serialize,
    Out: DeserializeOwned,
{
    /// Runs every input through the whole pipeline; returns the last stage's
    /// outputs in input order.
    ///
    /// # Errors
    ///
    /// The first failure in input order: a stage's `Err`
    /// ([`ErrorKind::Failed`](crate::ErrorKind::Failed)), a panic, a worker
    /// that died.
    pub fn map<I>(&self, inputs: I) -> Result<Vec<Out>, Error>
    where
        I: IntoIterator<Item = In>,
    {
        self.imap(inputs).collect_vec()
    }

    /// Like [`Pool::map_slab`](crate::Pool::map_slab), for a pipeline whose
    /// last stage returns a `Vec<u8>` or a `String`: the outputs stay in the
    /// frames they came in, lent as `&[u8]` or `&str`.
    ///
    /// # Errors
    ///
    /// As [`map`](Pipeline::map).
    pub fn map_slab<I>(&self, inputs: I) -> Result<crate::Slab<Out>, Error>
    where
        I: IntoIterator<Item = In>,
        Out: crate::SlabItem,
    {
        self.imap(inputs).collect_slab()
    }

    /// Like [`Pool::imap`]: lazily, one outcome per input, in input order.
    pub fn imap<I>(&self, inputs: I) -> Imap<'p, I::IntoIter, Out>
    where
        I: IntoIterator<Item = In>,
    {
        self.pool.stream(self.route(), inputs.into_iter(), true)
    }

    /// Like [`Pool::imap_unordered`]: one outcome per input, as they finish.
    pub fn imap_unordered<I>(&self, inputs: I) -> Imap<'p, I::IntoIter, Out>
    where
        I: IntoIterator<Item = In>,
    {
        self.pool.stream(self.route(), inputs.into_iter(), false)
    }
}
