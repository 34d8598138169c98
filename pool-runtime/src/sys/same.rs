//! A value seen as the concrete type it is: how the codec recognises the
//! types it moves without serde's per-element path (`codec/fast.rs`).
//!
//! `typeid::of` gives the `TypeId` of any type, lifetimes erased; for a
//! type with no lifetime in it ([`Lifeless`]) equal ids mean the same type,
//! lifetimes and all, so the reference can be re-typed.

use std::any::TypeId;

/// Types with no lifetime parameter anywhere in them: a `TypeId` equal to
/// theirs is theirs exactly.
///
/// # Safety
///
/// Implement it only for a type that names no lifetime, not even `'static`
/// (`&'static str` would match a `&'a str`, and re-typing it would stretch `'a`).
pub(crate) unsafe trait Lifeless: 'static {}

macro_rules! lifeless {
    ($($t:ty),*) => {
        $(
            // SAFETY: a primitive or std type that names no lifetime.
            unsafe impl Lifeless for $t {}
        )*
    };
}

lifeless!(
    bool, char, (), u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64,
    String, Vec<u8>
);

// SAFETY: `Option` adds no lifetime to a type that names none.
unsafe impl<A: Lifeless> Lifeless for Option<A> {}

/// `value` as an `A`, if `B` is `A`.
#[inline(always)]
pub(crate) fn as_same<A: Lifeless, B: ?Sized>(value: &B) -> Option<&A> {
    if typeid::of::<B>() != TypeId::of::<A>() {
        return None;
    }
    let ptr = (value as *const B).cast::<A>();
    // SAFETY: `B` has `A`'s `TypeId`, and `A` names no lifetime
    // (`Lifeless`), so `B` is `A`: the pointer is to a valid `A`, borrowed
    // for as long as `value` is.
    Some(unsafe { &*ptr })
}

/// `value` as an `A`, if `B` is `A`, for writing.
#[inline(always)]
pub(crate) fn as_same_mut<A: Lifeless, B: ?Sized>(value: &mut B) -> Option<&mut A> {
    if typeid::of::<B>() != TypeId::of::<A>() {
        return None;
    }
    let ptr = (value as *mut B).cast::<A>();
    // SAFETY: as in `as_same`: `B` is `A`, and the borrow is `value`'s own,
    // exclusive for as long as it is.
    Some(unsafe { &mut *ptr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_type_is_seen_as_it() {
        let v = vec![1u8, 2];
        assert_eq!(as_same::<Vec<u8>, _>(&v), Some(&v));
        assert!(as_same::<String, _>(&v).is_none());
        assert!(as_same::<Vec<u8>, _>(&vec![1u16]).is_none());
        assert!(as_same::<Vec<u8>, [u8]>(&v[..]).is_none());
        assert!(as_same::<u64, _>(&1u32).is_none());
        let mut slot: Option<String> = None;
        *as_same_mut::<Option<String>, _>(&mut slot).unwrap() = Some("x".into());
        assert_eq!(slot.as_deref(), Some("x"));
        assert!(as_same_mut::<Option<Vec<u8>>, _>(&mut slot).is_none());
    }
}
