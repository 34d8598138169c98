//! The outcomes `Pool::map_slab` reads from a worker's `Done` body
//! (`pool_runtime::Slab`): whatever the bytes, filling a slab returns an
//! error or the outputs, never a panic or an allocation past the body, and
//! it agrees with the owned path `map` takes (`outcome::read_each`): the
//! same outputs where that one decodes them all, an error where it meets
//! one.
//!
//! Input: `[config, count, body...]`: config bit 0 reads the outputs as
//! `String` (`&str`) instead of `Vec<u8>` (`&[u8]`); `count` (0-255) is
//! how many outcomes the body is said to hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_runtime::channel::{item, outcome};
use pool_runtime::{Slab, SlabItem};
use pool_runtime_fuzz::{largest, reset_largest};

/// What the owned path makes of `body`: every output, or `None` if it
/// meets an error (a failure outcome, an undecodable value, a malformed item).
fn owned<R: SlabItem>(body: &[u8], count: u32) -> Option<Vec<R>> {
    let mut items = item::Items::new(body);
    let mut out = Vec::new();
    let mut failed = false;
    let read = outcome::read_each::<R>(&mut items, count, |r| match r {
        Ok(v) => {
            out.push(v);
            true
        }
        Err(_) => {
            failed = true;
            false
        }
    });
    (read.is_ok() && !failed).then_some(out)
}

fn check<R: SlabItem + PartialEq + std::fmt::Debug>(body: &[u8], count: u32) {
    reset_largest();
    let slab = Slab::<R>::from_body(body.to_vec(), count);
    // The body's copy, the spans (12 bytes each, in a `Vec` that doubles)
    // and an error's message: nothing sized by a length the bytes claim.
    let bound = 2 * body.len() + 2 * 12 * (count as usize + 1) + 4096;
    let took = largest();
    assert!(took <= bound, "allocated {took} for a {}-byte body", body.len());
    match (slab, owned::<R>(body, count)) {
        (Ok(slab), Some(want)) => {
            assert_eq!(slab.len(), count as usize);
            assert_eq!(slab.to_vec(), want);
        }
        (Err(_), None) => {}
        (slab, want) => panic!("the slab ({:?}) and map's path ({want:?}) disagree", slab.map(|s| s.len())),
    }
}

fuzz_target!(|data: &[u8]| {
    let [config, count, body @ ..] = data else {
        return;
    };
    if config & 1 == 0 {
        check::<Vec<u8>>(body, u32::from(*count));
    } else {
        check::<String>(body, u32::from(*count));
    }
});
