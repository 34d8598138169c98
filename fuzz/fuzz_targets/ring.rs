//! The ring a peer shares (`pool_runtime::channel::ring`): whatever the
//! peer writes into the shared positions and bytes, between the reader's
//! own reads and writes, a read returns a frame within the limit that lies
//! inside what was published, or an error; never a panic or an allocation
//! past the limit. Frames this side pushes come back whole while the peer
//! leaves the ring alone.
//!
//! Input: a list of 11-byte operations `[op, a (u64 LE), b (u16 LE)]`:
//! op % 6 = 0 push a frame of `b % 5000` bytes, 1 pop, 2 scribble the head
//! (`a`), 3 the tail (`a`), 4 a data word (`b`, `a`), 5 the head to the
//! reader's position plus `b` (a plausible, possibly torn, publication).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_runtime::channel::ring::{RingPair, CAPACITY};
use pool_runtime_fuzz::{largest, reset_largest};

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let pair = RingPair::boxed();
    let ring = &pair.to_driver;
    let (mut head, mut tail) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut pushed = std::collections::VecDeque::new();
    let mut clean = true;
    reset_largest();
    for op in data.chunks_exact(11) {
        let a = u64::from_le_bytes(op[1..9].try_into().unwrap());
        let b = u16::from_le_bytes(op[9..11].try_into().unwrap()) as usize;
        match op[0] % 6 {
            0 => {
                let len = b % 5000;
                let mut frame = (len as u32).to_le_bytes().to_vec();
                frame.extend((0..len).map(|i| (i ^ b) as u8));
                if let Ok(true) = ring.push(&mut head, &frame) {
                    pushed.push_back(frame);
                }
            }
            1 => {
                let before = tail;
                let published = head;
                match ring.pop(&mut tail, LIMIT, &mut out) {
                    Ok(true) => {
                        assert!(out.len() >= 4 && out.len() - 4 <= LIMIT);
                        assert!(tail - before <= CAPACITY as u64);
                        if clean {
                            let want = pushed.pop_front().expect("a frame pushed");
                            assert_eq!(out, want);
                            assert!(tail <= published);
                        }
                    }
                    Ok(false) => assert!(!clean || pushed.is_empty()),
                    Err(_) => {
                        // Only a peer's scribble, or a frame over the limit.
                        assert!(!clean || pushed.front().is_some_and(|f| f.len() - 4 > LIMIT));
                        if clean {
                            return;
                        }
                    }
                }
            }
            2 => {
                ring.scribble(Some(a), None, None);
                clean = false;
            }
            3 => {
                ring.scribble(None, Some(a), None);
                clean = false;
            }
            4 => {
                ring.scribble(None, None, Some((b, a)));
                clean = false;
            }
            _ => {
                ring.scribble(Some(tail.wrapping_add(b as u64)), None, None);
                clean = false;
            }
        }
    }
    let big = largest();
    assert!(big <= 2 * (LIMIT + 8) + std::mem::size_of::<RingPair>(), "an allocation of {big} bytes");
});
