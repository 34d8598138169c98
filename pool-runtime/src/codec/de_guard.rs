//! The serde adapter every decode goes through: it bounds how deeply a
//! value may nest, and it keeps the message of an error that user code
//! raises.
//!
//! * **Depth.** Neither postcard nor bincode limits recursion: a recursive
//!   type (a tree, `Option<Box<Node>>`) nests one level per byte or two, so
//!   a frame of a few hundred KiB from a broken worker overflows the
//!   driver's stack, and a stack overflow aborts the whole process. Each
//!   sequence, map, enum, option or newtype the value opens costs one level
//!   of [`MAX_DEPTH`]; past it the decode is an error.
//! * **Messages.** postcard's `de::Error::custom` drops its message, so a
//!   user's `Deserialize` that says *why* it refused a value would reach the
//!   caller as "Serde Deserialization Error". In the [`Keep`] mode every
//!   error type that user code can build is [`Caught`], which keeps the
//!   message; where it has to cross back into the codec's own error type it
//!   is also left in the decode's [`Note`], which the codec module reads.
//!   That costs on every value (measured with callgrind: 27 % more
//!   instructions in a driver decoding 4 MiB `Vec<u8>` results), so decodes run in the [`Plain`] mode, which
//!   passes the codec's errors through untouched, and only a decode that
//!   failed with a dropped message runs again in [`Keep`].
//!
//! The wrappers only forward: every `Deserializer`, `Visitor`, `SeqAccess`,
//! `MapAccess`, `EnumAccess`, `VariantAccess` and `DeserializeSeed` call goes
//! to the wrapped one, with the depth left and the note carried along.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Levels of nesting a decoded value may have (serde_json's default limit).
pub(crate) const MAX_DEPTH: usize = 128;

/// Where one decode keeps the last message raised by user code.
#[derive(Debug, Default)]
pub(crate) struct Note(RefCell<Option<String>>);

impl Note {
    /// The message, if user code raised one.
    pub(crate) fn take(&self) -> Option<String> {
        self.0.borrow_mut().take()
    }
}

/// An error inside the adapter: the wrapped codec's own, or one that user
/// code raised, with its message.
#[cfg(not(feature = "codec-bincode"))]
#[derive(Debug)]
pub(crate) enum Caught<E> {
    Inner(E),
    User(String),
}

#[cfg(not(feature = "codec-bincode"))]
impl<E: de::Error> Caught<E> {
    /// The error as the wrapped codec's type, the message kept in `note`.
    fn into_inner(self, note: &Note) -> E {
        match self {
            Caught::Inner(e) => e,
            Caught::User(message) => {
                let e = E::custom(&message);
                *note.0.borrow_mut() = Some(message);
                e
            }
        }
    }
}

#[cfg(not(feature = "codec-bincode"))]
impl<E: fmt::Display> fmt::Display for Caught<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caught::Inner(e) => e.fmt(f),
            Caught::User(message) => f.write_str(message),
        }
    }
}

#[cfg(not(feature = "codec-bincode"))]
impl<E: fmt::Debug + fmt::Display> std::error::Error for Caught<E> {}

#[cfg(not(feature = "codec-bincode"))]
impl<E: de::Error> de::Error for Caught<E> {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Caught::User(message.to_string())
    }
}

/// What the adapter does with errors: the error type user code sees, made
/// from the codec's (`wrap`) and turned back into it (`unwrap`).
pub(crate) trait Mode {
    type Err<E: de::Error>: de::Error;
    fn wrap<E: de::Error>(e: E) -> Self::Err<E>;
    fn unwrap<E: de::Error>(e: Self::Err<E>, note: &Note) -> E;
}

/// The codec's own errors, untouched: the fast path.
pub(crate) enum Plain {}

impl Mode for Plain {
    type Err<E: de::Error> = E;

    #[inline(always)]
    fn wrap<E: de::Error>(e: E) -> E {
        e
    }

    #[inline(always)]
    fn unwrap<E: de::Error>(e: E, _: &Note) -> E {
        e
    }
}

/// Every error user code builds is [`Caught`], its message kept.
#[cfg(not(feature = "codec-bincode"))]
pub(crate) enum Keep {}

#[cfg(not(feature = "codec-bincode"))]
impl Mode for Keep {
    type Err<E: de::Error> = Caught<E>;

    fn wrap<E: de::Error>(e: E) -> Caught<E> {
        Caught::Inner(e)
    }

    fn unwrap<E: de::Error>(e: Caught<E>, note: &Note) -> E {
        e.into_inner(note)
    }
}

/// Decodes a `T` from `de` with at most [`MAX_DEPTH`] levels of nesting.
#[cfg(not(feature = "codec-bincode"))]
pub(crate) fn deserialize<'de, T: de::Deserialize<'de>, D: Deserializer<'de>, M: Mode>(
    de: D,
    note: &Note,
) -> Result<T, M::Err<D::Error>> {
    T::deserialize(Limited {
        inner: de,
        left: MAX_DEPTH,
        note,
        mode: PhantomData::<M>,
    })
}

/// A seed for `T` with at most [`MAX_DEPTH`] levels of nesting.
#[cfg(feature = "codec-bincode")]
pub(crate) fn seed<T>(note: &Note) -> Limited<'_, PhantomData<T>, Plain> {
    Limited {
        inner: PhantomData,
        left: MAX_DEPTH,
        note,
        mode: PhantomData,
    }
}

/// A wrapped deserializer, visitor, access or seed, the levels it may still
/// open, and the decode's note.
pub(crate) struct Limited<'n, X, M> {
    inner: X,
    left: usize,
    note: &'n Note,
    mode: PhantomData<M>,
}

impl<'n, X, M: Mode> Limited<'n, X, M> {
    /// `inner`, wrapped with the same depth and note as `self`.
    fn wrap<Y>(&self, inner: Y) -> Limited<'n, Y, M> {
        Limited {
            inner,
            left: self.left,
            note: self.note,
            mode: PhantomData,
        }
    }

    /// `inner`, wrapped one level deeper; an error past [`MAX_DEPTH`].
    fn descend<Y, E: de::Error>(&self, inner: Y) -> Result<Limited<'n, Y, M>, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Limited {
                inner,
                left,
                note: self.note,
                mode: PhantomData,
            }),
            None => {
                let msg = format_args!("value nests deeper than {MAX_DEPTH} levels");
                Err(M::unwrap(<M::Err<E> as de::Error>::custom(msg), self.note))
            }
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
                let visitor = self.wrap(visitor);
                self.inner.$method($($arg,)* visitor).map_err(M::wrap)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>, M: Mode> Deserializer<'de> for Limited<'_, D, M> {
    type Error = M::Err<D::Error>;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    // Owned strings and bytes are read as borrowed ones, which the
    // visitor then copies (serde allows a `Deserializer` any `visit_*`):
    // both codecs check a borrowed value's claimed length against the bytes
    // there, where bincode's owned read allocates that length first, up to
    // 1 GiB for a hostile one (found by the fuzz target `codec`).
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_str(visitor).map_err(M::wrap)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_bytes(visitor).map_err(M::wrap)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method::<M::Err<E>>(v).map_err(|e| M::unwrap(e, self.note))
            }
        )*
    };
}

impl<'de, V: Visitor<'de>, M: Mode> Visitor<'de> for Limited<'_, V, M> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_none::<M::Err<E>>()
            .map_err(|e| M::unwrap(e, self.note))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_unit::<M::Err<E>>()
            .map_err(|e| M::unwrap(e, self.note))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.descend(d)?;
        self.inner
            .visit_some(d)
            .map_err(|e| M::unwrap(e, self.note))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.descend(d)?;
        self.inner
            .visit_newtype_struct(d)
            .map_err(|e| M::unwrap(e, self.note))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        let a = self.descend(a)?;
        self.inner.visit_seq(a).map_err(|e| M::unwrap(e, self.note))
    }

    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        let a = self.descend(a)?;
        self.inner.visit_map(a).map_err(|e| M::unwrap(e, self.note))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        let a = self.descend(a)?;
        self.inner
            .visit_enum(a)
            .map_err(|e| M::unwrap(e, self.note))
    }
}

impl<'de, T: DeserializeSeed<'de>, M: Mode> DeserializeSeed<'de> for Limited<'_, T, M> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        let d = self.wrap(d);
        self.inner
            .deserialize(d)
            .map_err(|e| M::unwrap(e, self.note))
    }
}

impl<'de, A: SeqAccess<'de>, M: Mode> SeqAccess<'de> for Limited<'_, A, M> {
    type Error = M::Err<A::Error>;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed).map_err(M::wrap)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>, M: Mode> MapAccess<'de> for Limited<'_, A, M> {
    type Error = M::Err<A::Error>;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed).map_err(M::wrap)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed).map_err(M::wrap)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'n, 'de, A: EnumAccess<'de>, M: Mode> EnumAccess<'de> for Limited<'n, A, M> {
    type Error = M::Err<A::Error>;
    type Variant = Limited<'n, A::Variant, M>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let seed = self.wrap(seed);
        let (value, variant) = self.inner.variant_seed(seed).map_err(M::wrap)?;
        Ok((
            value,
            Limited {
                inner: variant,
                left: self.left,
                note: self.note,
                mode: PhantomData,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>, M: Mode> VariantAccess<'de> for Limited<'_, A, M> {
    type Error = M::Err<A::Error>;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant().map_err(M::wrap)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed).map_err(M::wrap)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor).map_err(M::wrap)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor).map_err(M::wrap)
    }
}
