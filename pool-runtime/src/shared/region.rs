//! The mapping behind every shared handle: one anonymous `MAP_SHARED`
//! region per handle, a header then `len` values, unmapped with the last
//! clone of the handle in each process.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::Atomic;

/// A header `H` then `len` values `T`, in memory that every process forked
/// after its creation shares (the pages are not copied on write).
pub(super) struct Region<H, T> {
    base: NonNull<u8>,
    bytes: NonZeroUsize,
    len: usize,
    _holds: PhantomData<(H, T)>,
}

// SAFETY: the region hands out `&H` (H: Sync) and `&[T]` only for atomic `T`;
// the values of other `T` are reached through `data_ptr`, whose callers
// (the mutex) serialize access. Plain `T` and the headers have no thread
// affinity, so the region may move to and be shared with any thread.
unsafe impl<H: Sync, T: Send + Sync> Send for Region<H, T> {}
// SAFETY: as above.
unsafe impl<H: Sync, T: Send + Sync> Sync for Region<H, T> {}

impl<H, T> Region<H, T> {
    /// Where the values start: after the header, aligned for `T`.
    fn data_offset() -> usize {
        size_of::<H>().next_multiple_of(align_of::<T>())
    }

    /// Maps a region holding `header` and `fill(0..len)`. See `mmap(2)`.
    pub(super) fn new(
        header: H,
        len: usize,
        mut fill: impl FnMut(usize) -> T,
    ) -> std::io::Result<Self> {
        // Nothing in shared memory is ever dropped: it is unmapped.
        const { assert!(!std::mem::needs_drop::<H>() && !std::mem::needs_drop::<T>()) };
        // The mapping is page-aligned (4 KiB at least), so is every header.
        assert!(align_of::<H>() <= 4096 && align_of::<T>() <= 4096);
        let too_big = || std::io::Error::from(std::io::ErrorKind::OutOfMemory);
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(Self::data_offset()))
            .ok_or_else(too_big)?;
        let bytes = NonZeroUsize::new(bytes.max(1)).unwrap();
        // SAFETY: a fresh anonymous mapping at an address the kernel picks:
        // it aliases no Rust object, and its pages start zeroed.
        let base = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        // Owned from here on: a panic in `fill` unmaps it.
        let region: Region<H, T> = Region {
            base: base.cast(),
            bytes,
            len,
            _holds: PhantomData,
        };
        // SAFETY: offset 0 of a new page-aligned mapping of at least
        // `size_of::<H>()` bytes, written before any reference exists.
        unsafe { region.base.cast::<H>().write(header) };
        for i in 0..len {
            let value = fill(i);
            // SAFETY: slot `i < len` lies inside the mapping (sized above),
            // aligned for `T`, and no reference to it exists yet.
            unsafe { region.data_ptr().add(i).write(value) };
        }
        Ok(region)
    }

    /// The header, which is only ever used through shared references.
    pub(super) fn header(&self) -> &H {
        // SAFETY: written by `new`, valid as long as the mapping, which
        // `self` keeps; nothing takes `&mut H`.
        unsafe { self.base.cast::<H>().as_ref() }
    }

    /// The first value; `len` of them follow. Writing through it is for a
    /// caller that holds the region's lock.
    pub(super) fn data_ptr(&self) -> *mut T {
        // SAFETY: `data_offset` is within the mapping (or one past its end
        // when `len` is 0, or `T` zero-sized), which `new` sized for it.
        unsafe { self.base.as_ptr().add(Self::data_offset()).cast() }
    }

    /// How many values.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl<H, T: Atomic> Region<H, T> {
    /// The values, when every access to them is atomic.
    pub(super) fn atomics(&self) -> &[T] {
        // SAFETY: `len` values written by `new`, aligned and valid while the
        // mapping lives; atomics are only changed through `&`, so shared
        // references to them may coexist in every process.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len) }
    }
}

impl<H, T> Drop for Region<H, T> {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, with its length; no reference
        // into it outlives `self` (every one borrows a handle holding it).
        // Other processes keep their own mappings of the same pages.
        let _ = unsafe { munmap(self.base.cast(), self.bytes.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn holds_the_header_and_the_values() {
        let r: Region<u8, AtomicU64> = Region::new(7, 3, |i| AtomicU64::new(i as u64 * 10)).unwrap();
        assert_eq!(*r.header(), 7);
        let v: Vec<u64> = r.atomics().iter().map(|a| a.load(Ordering::Relaxed)).collect();
        assert_eq!(v, [0, 10, 20]);
        assert_eq!(r.data_ptr() as usize % align_of::<AtomicU64>(), 0);
    }

    #[test]
    fn an_impossible_size_is_an_error_not_a_panic() {
        let r = Region::<(), u64>::new((), usize::MAX / 4, |_| 0);
        assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::OutOfMemory);
    }
}
