//! What may live in memory every process of a pool maps: [`Plain`] data
//! (values with no pointers) and [`Atomic`] integers.

use std::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32,
    AtomicU64, AtomicU8, AtomicUsize,
};

/// Plain data: a value that means the same in every process that reads it.
///
/// Shared memory is mapped at one address in the driver and every worker,
/// but the heap, the stack and the descriptors behind it are each process's
/// own: a `Box`, a `&'static` leaked by a worker, a `String` or an fd written
/// there would be dangling, or someone else's, in the process that reads it.
/// So [`SharedMutex`](super::SharedMutex) and [`SharedArray`](super::SharedArray)
/// hold only `Plain` types: the primitive numbers, `bool`, `char`, `()` and
/// arrays of them, and your own `#[repr(C)]` structs of them.
///
/// # Safety
///
/// Implement it only for a type that holds no pointer, reference, handle or
/// descriptor, directly or in a field (every field `Plain`), and needs no
/// `Drop` (it is `Copy`).
///
/// # Examples
///
/// ```
/// use pool_runtime::shared::{Plain, SharedMutex};
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Stats { count: u64, sum: f64 }
///
/// // SAFETY: two numbers; no pointer, reference or descriptor.
/// unsafe impl Plain for Stats {}
///
/// let stats = SharedMutex::new(Stats { count: 0, sum: 0.0 })?;
/// stats.lock().unwrap().count += 1;
/// assert_eq!(stats.lock().unwrap().count, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {
        // SAFETY: numbers, `bool`, `char` and `()` hold no pointer.
        $(unsafe impl Plain for $t {})*
    };
}
plain!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, ());

// SAFETY: an array of values holding no pointer holds none.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

mod sealed {
    pub trait Sealed {}
}

/// The std atomic types a [`SharedAtomic`](super::SharedAtomic) or
/// [`SharedAtomicArray`](super::SharedAtomicArray) can hold: `AtomicBool`
/// and the atomic integers up to 64 bits. They are lock-free, so they work
/// across processes as they do across threads (sealed: implemented here only).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicI32, Ordering};
/// use pool_runtime::shared::SharedAtomic;
///
/// let level = SharedAtomic::new(AtomicI32::new(-1))?;
/// level.fetch_add(2, Ordering::Relaxed);
/// assert_eq!(level.load(Ordering::Relaxed), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Atomic: sealed::Sealed + Send + Sync + 'static {}

macro_rules! atomic {
    ($($t:ty),*) => {
        $(impl sealed::Sealed for $t {}
          impl Atomic for $t {})*
    };
}
atomic!(
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);
