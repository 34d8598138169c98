//! The registry of annotated functions, filled at link time by the macros.
//!
//! Every `#[worker_task]` and `#[worker_exit]` adds one entry with a stable
//! name (`module_path!()` + `::` + fn name) and the type-erased glue that
//! decodes, calls and encodes. A worker finds the glue by index (a forked
//! worker has the very same table) or by name (a worker that is not a fork).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::batch::stages::StageGlue;
use crate::batch::Batch;

/// Glue that runs one batch of a task against a worker's state.
pub type RunBatch = fn(&mut dyn Any, &mut Batch<'_>) -> Result<(), String>;
/// Glue that consumes a worker's state and encodes the exit hook's result.
pub type RunExit = fn(Box<dyn Any>, &mut Vec<u8>) -> Result<(), String>;

/// One `#[worker_task]`.
#[derive(Debug)]
pub struct TaskEntry {
    /// `module::path::fn_name`.
    pub name: &'static str,
    /// The `TypeId` of the fn item, so the driver can go from the value to the entry.
    pub type_id: fn() -> TypeId,
    /// The crate, its version and the types of the signature, for the
    /// fingerprint a worker started fresh checks.
    pub signature: &'static str,
    /// Decode → call → encode for a batch.
    pub run: RunBatch,
    /// The same task as one stage of a pipeline.
    pub stage: StageGlue,
    /// Decodes one encoded input and formats it with `Debug`; `None` if the
    /// input type has no `Debug` (or the bytes do not decode). For
    /// [`Pool::insights`](crate::Pool::insights)' slowest tasks.
    pub debug_input: DebugInput,
}

/// Glue that shows one encoded input with `Debug`, if its type has it.
pub type DebugInput = fn(&[u8]) -> Option<String>;

/// One `#[worker_exit]`.
#[derive(Debug)]
pub struct ExitEntry {
    /// `module::path::fn_name`.
    pub name: &'static str,
    /// The `TypeId` of the fn item.
    pub type_id: fn() -> TypeId,
    /// As [`TaskEntry::signature`].
    pub signature: &'static str,
    /// Consume the state, encode the result.
    pub run: RunExit,
}

/// Glue that builds a worker's state from its init's encoded arguments, in
/// a worker that is not a fork (`Pool::builder().spawn()`).
pub type FreshInit = fn(&[u8], crate::WorkerInfo) -> Result<Box<dyn Any>, String>;

/// One `#[worker_init]`.
#[derive(Debug)]
pub struct InitEntry {
    /// `module::path::fn_name`.
    pub name: &'static str,
    /// The `TypeId` of the fn item.
    pub type_id: fn() -> TypeId,
    /// As [`TaskEntry::signature`].
    pub signature: &'static str,
    /// Decode the arguments, build the state.
    pub fresh: FreshInit,
}

/// Every `#[worker_init]` linked into this binary, in link order.
#[linkme::distributed_slice]
pub static INITS: [InitEntry];

/// Every `#[worker_task]` linked into this binary, in link order.
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

/// Every `#[worker_exit]` linked into this binary, in link order.
#[linkme::distributed_slice]
pub static EXITS: [ExitEntry];

/// A sorted view of one slice, with lookups by name and by type.
struct Table<E: 'static> {
    /// Sorted by name, so that the index of an entry is the same in every
    /// process that runs this binary.
    entries: Vec<&'static E>,
    by_type: HashMap<TypeId, u32>,
    by_name: HashMap<&'static str, u32>,
}

impl<E> Table<E> {
    fn new(slice: &'static [E], name: fn(&E) -> &'static str, ty: fn(&E) -> TypeId) -> Self {
        let mut entries: Vec<&'static E> = slice.iter().collect();
        entries.sort_by_key(|e| name(e));
        let by_type = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (ty(e), i as u32))
            .collect();
        // Two functions can share a stable name (same name, nested in two
        // functions of one module): such a name finds neither, rather than
        // the wrong one.
        let mut by_name: HashMap<&'static str, u32> = HashMap::new();
        let mut ambiguous = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if by_name.insert(name(e), i as u32).is_some() {
                ambiguous.push(name(e));
            }
        }
        for n in ambiguous {
            by_name.remove(n);
        }
        Table {
            entries,
            by_type,
            by_name,
        }
    }
}

fn tasks() -> &'static Table<TaskEntry> {
    static TABLE: OnceLock<Table<TaskEntry>> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(&TASKS, |e| e.name, |e| (e.type_id)()))
}

fn exits() -> &'static Table<ExitEntry> {
    static TABLE: OnceLock<Table<ExitEntry>> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(&EXITS, |e| e.name, |e| (e.type_id)()))
}

fn inits() -> &'static Table<InitEntry> {
    static TABLE: OnceLock<Table<InitEntry>> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(&INITS, |e| e.name, |e| (e.type_id)()))
}

/// Builds the tables now. Called before any fork, so that no child can
/// inherit a table half-built by another thread.
pub(crate) fn prepare() {
    tasks();
    exits();
    inits();
}

/// The init whose fn item has type `T`.
pub(crate) fn init_of<T: 'static>() -> Option<&'static InitEntry> {
    let t = inits();
    t.by_type.get(&TypeId::of::<T>()).map(|&i| t.entries[i as usize])
}

/// Looks a `#[worker_init]` up by its stable name.
pub fn init_by_name(name: &str) -> Option<&'static InitEntry> {
    let t = inits();
    t.by_name.get(name).map(|&i| t.entries[i as usize])
}

/// What this program's code is, for a worker started fresh to compare
/// with its own: every registered function, as `(kind, name, signature)`,
/// sorted. Tasks and exit hooks are found by their index in the sorted
/// tables, so two programs with the same list find the same functions.
pub(crate) fn fingerprint() -> Vec<crate::channel::hello::Entry> {
    let task = tasks().entries.iter().map(|e| ("task", e.name, e.signature));
    let exit = exits().entries.iter().map(|e| ("exit hook", e.name, e.signature));
    let init = inits().entries.iter().map(|e| ("init", e.name, e.signature));
    task.chain(exit)
        .chain(init)
        .map(|(k, n, s)| (k.to_string(), n.to_string(), s.to_string()))
        .collect()
}

/// The index of the task whose fn item has type `T`.
pub(crate) fn task_index<T: 'static>() -> Option<u32> {
    tasks().by_type.get(&TypeId::of::<T>()).copied()
}

/// The index of the exit hook whose fn item has type `T`.
pub(crate) fn exit_index<T: 'static>() -> Option<u32> {
    exits().by_type.get(&TypeId::of::<T>()).copied()
}

pub(crate) fn task_at(index: u32) -> Option<&'static TaskEntry> {
    tasks().entries.get(index as usize).copied()
}

pub(crate) fn exit_at(index: u32) -> Option<&'static ExitEntry> {
    exits().entries.get(index as usize).copied()
}

/// Looks a `#[worker_task]` up by its stable name, `module::path::fn_name`.
///
/// This is how a worker that is not a fork of the driver finds the glue. A
/// name that two registered functions share finds neither.
pub fn task_by_name(name: &str) -> Option<&'static TaskEntry> {
    let t = tasks();
    t.by_name.get(name).map(|&i| t.entries[i as usize])
}

/// Looks a `#[worker_exit]` up by its stable name.
pub fn exit_by_name(name: &str) -> Option<&'static ExitEntry> {
    let t = exits();
    t.by_name.get(name).map(|&i| t.entries[i as usize])
}

/// The stable name of the task whose fn item is `task`, if it is registered.
///
/// ```
/// use pool_runtime::worker_task;
///
/// #[worker_task]
/// fn square(x: u64) -> u64 { x * x }
///
/// assert!(pool_runtime::registry::task_name(square).unwrap().ends_with("::square"));
/// ```
pub fn task_name<T: 'static>(_task: T) -> Option<&'static str> {
    task_index::<T>().and_then(task_at).map(|e| e.name)
}

/// Every registered task name, sorted.
pub fn task_names() -> impl Iterator<Item = &'static str> {
    tasks().entries.iter().map(|e| e.name)
}
