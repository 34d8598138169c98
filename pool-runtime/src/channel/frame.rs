//! Length-prefixed frames: `u32` little-endian length, then that many bytes.
//!
//! The length is checked against a limit before anything is allocated, and
//! the buffer only grows as bytes really arrive, so a hostile prefix costs
//! nothing but an error.

use std::io::{self, Read};

/// The largest frame either side accepts by default: 1 GiB (the bincode
/// codec's limit per value, `codec::LIMIT`, is the same).
pub const MAX_FRAME: usize = 1 << 30;

/// Bytes in the length prefix.
pub const PREFIX: usize = 4;

/// A frame that cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix asks for more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The length the prefix asks for.
        len: usize,
        /// The reader's (or writer's) limit.
        limit: usize,
    },
    /// The peer closed the channel in the middle of a frame.
    #[error("channel closed in the middle of a frame ({have} of {want} bytes)")]
    Truncated {
        /// Bytes of the frame that arrived, its prefix included.
        have: usize,
        /// Bytes the frame needs, its prefix included (just the prefix's
        /// when that was cut short).
        want: usize,
    },
}

/// Starts a frame in `buf`: reserves the length prefix, to be filled by [`finish`].
pub(crate) fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; PREFIX]);
    start
}

/// Writes the length prefix of the frame begun at `start`.
pub fn finish(buf: &mut [u8], start: usize, limit: usize) -> Result<(), FrameError> {
    let len = buf.len() - start - PREFIX;
    if len > limit || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, limit });
    }
    buf[start..start + PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A byte stream that reads into a buffer's spare capacity, so that the
/// buffer needs no zero-filling first (the driver's socket, `sys::recv_spare`).
pub trait ReadSpare {
    /// Appends at most `max` bytes to `buf`, within its spare capacity
    /// (`buf.capacity() - buf.len() >= max`), returning how many; `0` at the
    /// end of the stream. `WouldBlock` when nothing is there now.
    fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize>;
}

/// Any `Read` as a [`ReadSpare`], through a zeroed 8 KiB piece on the
/// stack (tests, fuzzing).
#[cfg(any(test, fuzzing))]
#[derive(Debug)]
pub struct Zeroing<'a, R>(pub &'a mut R);

#[cfg(any(test, fuzzing))]
impl<R: Read> ReadSpare for Zeroing<'_, R> {
    fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let mut piece = [0u8; 8192];
        let n = self.0.read(&mut piece[..max.min(8192)])?;
        buf.extend_from_slice(&piece[..n]);
        Ok(n)
    }
}

/// Frames from this size up take the reader's buffer with them
/// ([`FrameReader::next_frame`]).
const HAND_OVER: usize = 64 * 1024;

/// Reassembles frames from a non-blocking byte stream.
#[derive(Debug)]
pub struct FrameReader {
    /// The bytes read and not yet taken: its length is what arrived, its
    /// spare capacity where the next read goes (never zero-filled).
    buf: Vec<u8>,
    /// Where the first frame not yet taken starts: frames are taken by
    /// moving this, and the rest moves to the front once per read, not
    /// once per frame.
    start: usize,
    limit: usize,
}

/// What one call to [`FrameReader::fill_spare`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// Some bytes arrived (maybe not a whole frame), filling the room given:
    /// more may be waiting.
    Data,
    /// Some bytes arrived, fewer than there was room for: nothing more is
    /// waiting now, so another read would only say so.
    Drained,
    /// Nothing to read right now.
    WouldBlock,
    /// The peer closed its end.
    Eof,
}

impl FrameReader {
    /// A reader that refuses frames of more than `limit` bytes (prefix not counted).
    pub fn new(limit: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            limit,
        }
    }

    /// How many bytes the frame at the front still needs, if its prefix is known.
    fn wanted(&self) -> Result<usize, FrameError> {
        let at = self.start;
        let Some(prefix) = self.buf.get(at..at + PREFIX) else {
            return Ok(PREFIX);
        };
        let len = u32::from_le_bytes(prefix.try_into().expect("four bytes")) as usize;
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        Ok(PREFIX + len)
    }

    /// Reads what `src` has now into the buffer, zero-filling the room first
    /// (see [`fill_spare`](FrameReader::fill_spare), which does not): tests, fuzzing.
    #[cfg(any(test, fuzzing))]
    pub fn fill(&mut self, src: &mut impl Read) -> Result<Fill, FrameError> {
        self.fill_spare(&mut Zeroing(src))
    }

    /// Reads what `src` has now into the buffer, growing it only as far as the
    /// frame at the front needs (and at most 4 MiB at a time, or the whole
    /// frame when that is at most 64 KiB more). A frame's last read stops at
    /// its end, so that a large frame is all the buffer holds and can be
    /// handed over whole ([`next_frame`](FrameReader::next_frame)).
    pub fn fill_spare(&mut self, src: &mut impl ReadSpare) -> Result<Fill, FrameError> {
        const STEP: usize = 64 * 1024;
        const MAX_STEP: usize = 4 << 20;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let wanted = self.wanted()?;
        let filled = self.buf.len();
        let room = match wanted.saturating_sub(filled) {
            0 => STEP,
            // A frame to be handed over whole: its last read stops at its
            // end, or the next frame's first bytes would make it a copy.
            need if need <= MAX_STEP + STEP && wanted >= HAND_OVER => need,
            need if need <= MAX_STEP + STEP => need.max(STEP),
            _ => MAX_STEP,
        };
        self.buf.reserve(room);
        loop {
            match src.read_spare(&mut self.buf, room) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => return Ok(if n < room { Fill::Drained } else { Fill::Data }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::WouldBlock),
                // A reset or any other failure is the end of the channel.
                Err(_) => return Ok(Fill::Eof),
            }
        }
    }

    /// Takes the complete frame at the front, its length prefix still in
    /// front (the payload starts at [`PREFIX`]): dropping it would move every
    /// byte of the frame. A large frame that is all the buffer holds is
    /// handed over with the buffer itself (no copy); a small one is copied
    /// out, so that the buffer serves the next read.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let wanted = self.wanted()?;
        let have = self.buf.len() - self.start;
        if have < PREFIX || have < wanted {
            return Ok(None);
        }
        if self.start == 0 && have == wanted && wanted >= HAND_OVER {
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        let frame = self.buf[self.start..self.start + wanted].to_vec();
        self.start += wanted;
        if self.start == self.buf.len() {
            self.start = 0;
            self.buf.clear();
        }
        Ok(Some(frame))
    }

    /// After [`Fill::Eof`]: an error if a frame was cut short.
    pub fn check_clean_eof(&self) -> Result<(), FrameError> {
        if self.buf.len() == self.start {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                have: self.buf.len() - self.start,
                want: self.wanted().unwrap_or(0),
            })
        }
    }
}

/// Reads one whole frame from a blocking stream into `buf` (cleared first).
/// `Ok(false)` means the peer closed the channel between frames.
pub fn read_blocking(
    src: &mut impl Read,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<bool> {
    let mut prefix = [0u8; PREFIX];
    let mut have = 0;
    while have < PREFIX {
        match src.read(&mut prefix[have..]) {
            Ok(0) if have == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            FrameError::TooLarge { len, limit },
        ));
    }
    buf.clear();
    // Grows with the bytes that really arrive.
    let got = src.take(len as u64).read_to_end(buf)?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            let s = begin(&mut buf);
            buf.extend_from_slice(p);
            finish(&mut buf, s, MAX_FRAME).unwrap();
        }
        buf
    }

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn frames_survive_any_split() {
        let bytes = framed(&[b"one", b"", b"three three", &[7u8; 70_000]]);
        for step in [1, 2, 3, 5, 64, 100_000] {
            let mut r = FrameReader::new(MAX_FRAME);
            let mut src = Trickle(&bytes, step);
            let mut got = Vec::new();
            while matches!(r.fill(&mut src).unwrap(), Fill::Data | Fill::Drained) {
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 4, "step {step}");
            assert_eq!(&got[0][PREFIX..], b"one");
            assert!(got[1][PREFIX..].is_empty());
            assert_eq!(got[3][PREFIX..].len(), 70_000);
        }
    }

    #[test]
    fn a_large_frame_followed_by_another_is_handed_over_whole() {
        let bytes = framed(&[&[1u8; 100_000], &[2u8; 100_000], b"small"]);
        for step in [7_000, 30_000, 1 << 20] {
            let mut r = FrameReader::new(MAX_FRAME);
            let mut src = Trickle(&bytes, step);
            let mut got = Vec::new();
            while matches!(r.fill(&mut src).unwrap(), Fill::Data | Fill::Drained) {
                while let Some(f) = r.next_frame().unwrap() {
                    // Handed over: the reader starts again with no buffer.
                    let whole = f.len() >= HAND_OVER && r.buf.capacity() == 0;
                    got.push((f[PREFIX], f.len(), whole));
                }
            }
            let large = PREFIX + 100_000;
            assert_eq!(
                got,
                [(1, large, true), (2, large, true), (b's', PREFIX + 5, false)],
                "step {step}"
            );
        }
    }

    #[test]
    fn oversized_prefix_is_refused_before_allocating() {
        let mut r = FrameReader::new(1024);
        let mut src = Trickle(&u32::MAX.to_le_bytes(), 4);
        r.fill(&mut src).unwrap();
        assert_eq!(
            r.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                limit: 1024
            })
        );
        assert!(r.buf.capacity() <= 64 * 1024 + 4);
    }

    #[test]
    fn a_large_claim_grows_only_with_the_bytes() {
        // Claims 900 MiB, sends 10 bytes.
        let mut bytes = (900u32 << 20).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1; 10]);
        let mut r = FrameReader::new(MAX_FRAME);
        let mut src = Trickle(&bytes, 1 << 20);
        while matches!(r.fill(&mut src).unwrap(), Fill::Data | Fill::Drained) {}
        assert_eq!(r.next_frame(), Ok(None));
        assert!(r.buf.capacity() <= 5 << 20, "capacity {}", r.buf.capacity());
        assert!(r.check_clean_eof().is_err());
    }

    #[test]
    fn blocking_read_checks_limit_and_truncation() {
        let bytes = framed(&[b"hello"]);
        let mut buf = Vec::new();
        assert!(read_blocking(&mut &bytes[..], &mut buf, 16).unwrap());
        assert_eq!(buf, b"hello");
        assert!(!read_blocking(&mut &b""[..], &mut buf, 16).unwrap());
        assert!(read_blocking(&mut &bytes[..], &mut buf, 4).is_err());
        assert!(read_blocking(&mut &bytes[..bytes.len() - 1], &mut buf, 16).is_err());
    }
}
