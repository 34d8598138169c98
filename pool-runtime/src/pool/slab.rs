//! [`Pool::map_slab`]: outputs that are bytes or text, left in the frames
//! they arrived in.
//!
//! A `map` of a task returning `Vec<u8>` makes one allocation and one copy
//! per output in the caller's thread (the `Vec` it hands back), on top of
//! the worker's own; for small outputs that is most of the driver's work
//! per item (BENCHMARKS.md, issue 14, seeds). A [`Slab`] keeps each
//! `Done` frame's bytes as they came and a span per output into them, so
//! reading the outputs costs no allocation at all.
//!
//! [`Pool::map_slab`]: crate::Pool::map_slab

use std::fmt;
use std::iter::FusedIterator;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Imap;
use crate::channel::item::{self, Items};
use crate::codec::CodecError;
use crate::channel::outcome::{self, Status};
use crate::driver::Completion;
use crate::error::Error;

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for String {}
}

/// An output type a [`Slab`] can hold: `Vec<u8>` (read as `[u8]`) and
/// `String` (read as `str`). Sealed: their encodings are a length and the
/// bytes, which is what lets the bytes stay where they are.
pub trait SlabItem: DeserializeOwned + sealed::Sealed + 'static {
    /// What the slab lends for each output: `[u8]` or `str`.
    type View: ?Sized + fmt::Debug + ToOwned<Owned = Self>;

    /// The output encoded in `value`, as `(where its bytes start in
    /// value, how many)`, checked (a `String`'s bytes are UTF-8).
    #[doc(hidden)]
    fn locate(value: &[u8]) -> Result<(usize, usize), CodecError>;

    /// The view of bytes [`locate`](SlabItem::locate) accepted.
    #[doc(hidden)]
    fn view(bytes: &[u8]) -> &Self::View;
}

/// Where a view's bytes start in `value`, and how many: the value must be
/// exactly one encoded `T` (no bytes after it).
fn locate_as<'a, T: serde::Deserialize<'a>>(value: &'a [u8], bytes: impl Fn(&T) -> &'a [u8]) -> Result<(usize, usize), CodecError> {
    let v = item::decode_borrowed::<T>(value)?;
    let b = bytes(&v);
    // The view is borrowed from `value`: its place is its offset there.
    let start = b.as_ptr() as usize - value.as_ptr() as usize;
    Ok((start, b.len()))
}

impl SlabItem for Vec<u8> {
    type View = [u8];

    fn locate(value: &[u8]) -> Result<(usize, usize), CodecError> {
        locate_as::<&[u8]>(value, |b| b)
    }

    fn view(bytes: &[u8]) -> &[u8] {
        bytes
    }
}

impl SlabItem for String {
    type View = str;

    fn locate(value: &[u8]) -> Result<(usize, usize), CodecError> {
        locate_as::<&str>(value, |s| s.as_bytes())
    }

    fn view(bytes: &[u8]) -> &str {
        // `locate` checked these bytes as a `&str`.
        std::str::from_utf8(bytes).expect("checked when the slab was filled")
    }
}

/// One output's place: its frame, and its bytes there.
#[derive(Clone, Copy, Debug)]
struct Span {
    frame: u32,
    start: u32,
    len: u32,
}

/// The outputs of a [`Pool::map_slab`](crate::Pool::map_slab), in input
/// order, each lent as a `&[u8]` (for a task returning `Vec<u8>`) or a
/// `&str` (returning `String`) borrowed from the frames the workers sent:
/// no allocation per output.
///
/// Indexing, [`get`](Slab::get) and [`iter`](Slab::iter) read it;
/// [`to_vec`](Slab::to_vec) makes the owned outputs a `map` would have
/// returned.
#[derive(Clone)]
pub struct Slab<R: SlabItem> {
    frames: Vec<Vec<u8>>,
    spans: Vec<Span>,
    _out: std::marker::PhantomData<fn() -> R>,
}

impl<R: SlabItem> Slab<R> {
    fn with_capacity(n: usize) -> Self {
        Slab {
            frames: Vec::new(),
            spans: Vec::with_capacity(n),
            _out: std::marker::PhantomData,
        }
    }

    /// How many outputs it holds (one per input).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether it holds no output (the inputs were none).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The output of input `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&R::View> {
        self.spans.get(index).map(|s| self.view(s))
    }

    /// The outputs in input order.
    pub fn iter(&self) -> SlabIter<'_, R> {
        SlabIter {
            slab: self,
            spans: self.spans.iter(),
        }
    }

    /// The owned outputs, as `map` returns them (one allocation each).
    pub fn to_vec(&self) -> Vec<R> {
        self.iter().map(ToOwned::to_owned).collect()
    }

    fn view(&self, s: &Span) -> &R::View {
        let (start, end) = (s.start as usize, s.start as usize + s.len as usize);
        R::view(&self.frames[s.frame as usize][start..end])
    }

    /// Takes the `count` outcomes of `frame[body..]`: each success's span,
    /// or the first failure (as `map` would return it).
    fn fill(&mut self, frame: Vec<u8>, body: usize, count: u32) -> Result<(), Error> {
        let at = self.frames.len() as u32;
        let Some(bytes) = frame.get(body..) else {
            return Err(item::Malformed("a body past its frame").into());
        };
        let mut items = Items::new(bytes);
        for _ in 0..count {
            let (status, value) = items.next_item()?;
            if status != Status::Ok as u8 {
                return Err(outcome::failure(status, value));
            }
            let (start, len) = R::locate(value).map_err(outcome::undecodable)?;
            // Frames are at most `u32::MAX` bytes (their length prefix).
            let start = value.as_ptr() as usize - frame.as_ptr() as usize + start;
            self.spans.push(Span {
                frame: at,
                start: start as u32,
                len: len as u32,
            });
        }
        self.frames.push(frame);
        Ok(())
    }
}

/// The fuzz target `slab` (`fuzz/`) reads peer bytes through [`Slab::fill`].
#[cfg(fuzzing)]
impl<R: SlabItem> Slab<R> {
    /// The slab of the `count` outcomes in `body` (a `Done` body), as
    /// `map_slab` fills one from a worker's frame.
    #[doc(hidden)]
    pub fn from_body(body: Vec<u8>, count: u32) -> Result<Self, Error> {
        let mut slab = Slab::with_capacity(0);
        slab.fill(body, 0, count)?;
        Ok(slab)
    }
}

impl<R: SlabItem> fmt::Debug for Slab<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<R: SlabItem> std::ops::Index<usize> for Slab<R> {
    type Output = R::View;

    /// # Panics
    ///
    /// If `index` is not below [`len`](Slab::len).
    fn index(&self, index: usize) -> &R::View {
        self.view(&self.spans[index])
    }
}

impl<'s, R: SlabItem> IntoIterator for &'s Slab<R> {
    type Item = &'s R::View;
    type IntoIter = SlabIter<'s, R>;

    fn into_iter(self) -> SlabIter<'s, R> {
        self.iter()
    }
}

/// The outputs of a [`Slab`], in input order ([`Slab::iter`]).
pub struct SlabIter<'s, R: SlabItem> {
    slab: &'s Slab<R>,
    spans: std::slice::Iter<'s, Span>,
}

impl<R: SlabItem> fmt::Debug for SlabIter<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabIter").field("left", &self.spans.len()).finish()
    }
}

impl<'s, R: SlabItem> Iterator for SlabIter<'s, R> {
    type Item = &'s R::View;

    fn next(&mut self) -> Option<&'s R::View> {
        self.spans.next().map(|s| self.slab.view(s))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl<R: SlabItem> DoubleEndedIterator for SlabIter<'_, R> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.spans.next_back().map(|s| self.slab.view(s))
    }
}

impl<R: SlabItem> ExactSizeIterator for SlabIter<'_, R> {}
impl<R: SlabItem> FusedIterator for SlabIter<'_, R> {}

impl<I, R> Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: SlabItem,
{
    /// Every output in input order, left in its frame, or the first error:
    /// what `map_slab` returns. The stream must be ordered.
    pub(crate) fn collect_slab(mut self) -> Result<Slab<R>, Error> {
        debug_assert!(self.ordered, "a slab is in input order");
        let mut slab = Slab::with_capacity(self.size_hint().0);
        #[cfg(feature = "progress")]
        if self.progress.is_wanted() {
            self.progress.start(self.size_hint());
        }
        if let Some(e) = self.setup_error.take() {
            return Err(e);
        }
        loop {
            if let Some(entry) = self.take_in_order() {
                #[cfg(feature = "progress")]
                let before = slab.len();
                let filled = match entry {
                    Completion::Failed { error, .. } => Err(error),
                    Completion::Items { count, frame, body, .. } => {
                        self.delivered += u64::from(count);
                        slab.fill(frame, body, count)
                    }
                };
                #[cfg(feature = "progress")]
                for _ in before..slab.len() {
                    self.progress.observe(Some(&Ok::<(), ()>(())));
                }
                filled?;
                continue;
            }
            self.feed();
            if self.is_finished() {
                #[cfg(feature = "progress")]
                self.progress.observe(None::<&Result<(), ()>>);
                return Ok(slab);
            }
            if self.pending.first_key_value().is_some_and(|(&k, _)| k == self.delivered) {
                continue;
            }
            self.receive();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A frame whose body (from `body`) is `items`.
    fn frame(items: impl FnOnce(&mut Vec<u8>)) -> (Vec<u8>, usize) {
        let mut f = vec![9u8; 5];
        items(&mut f);
        (f, 5)
    }

    #[test]
    fn spans_point_at_each_output_in_the_frame() {
        let (f, body) = frame(|out| {
            outcome::write(out, Status::Ok, &vec![1u8, 2, 3], &mut false);
            outcome::write(out, Status::Ok, &Vec::<u8>::new(), &mut false);
            outcome::write(out, Status::Ok, &vec![7u8; 300], &mut true);
        });
        let mut slab = Slab::<Vec<u8>>::with_capacity(3);
        slab.fill(f, body, 3).unwrap();
        assert_eq!(slab.to_vec(), [vec![1, 2, 3], vec![], vec![7; 300]]);
    }

    #[test]
    fn a_failure_or_a_corrupt_item_is_an_error_never_a_panic() {
        let (f, body) = frame(|out| {
            outcome::write(out, Status::Ok, "fine", &mut false);
            outcome::write_message(out, Status::Failed, "stage 2 said no", &mut false);
        });
        let e = Slab::<String>::with_capacity(2).fill(f, body, 2).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Failed(m) if m == "stage 2 said no"), "{e}");
        // Text that is not UTF-8.
        let (f, body) = frame(|out| outcome::write(out, Status::Ok, &vec![0xffu8], &mut false));
        let e = Slab::<String>::with_capacity(1).fill(f, body, 1).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Codec(_)), "{e}");
        // Bytes after the value, a body cut short, more items claimed than
        // there are, a body past the frame.
        let (f, body) = frame(|out| outcome::write(out, Status::Ok, &(vec![1u8], 2u8), &mut false));
        assert!(Slab::<Vec<u8>>::with_capacity(1).fill(f, body, 1).is_err());
        let (mut f, body) = frame(|out| outcome::write(out, Status::Ok, &vec![1u8; 40], &mut false));
        f.truncate(f.len() - 10);
        assert!(Slab::<Vec<u8>>::with_capacity(1).fill(f, body, 1).is_err());
        let (f, body) = frame(|out| outcome::write(out, Status::Ok, &vec![1u8], &mut false));
        assert!(Slab::<Vec<u8>>::with_capacity(2).fill(f, body, 2).is_err());
        assert!(Slab::<Vec<u8>>::with_capacity(1).fill(vec![0; 3], 9, 1).is_err());
    }
}
