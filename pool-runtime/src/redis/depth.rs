//! How many batches each of a Redis pool's relays may hold at once: what
//! the driver keeps in flight, sized to the hosts' workers and to how long
//! a batch runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::transport::Relayed;

/// How many batches each of the driver's relays may hold at once: for
/// every worker of the hosts serving the pool, one running and one waiting,
/// as a local pool's workers have, so that a host that joins adds its
/// workers to the map; and, for batches of a few inputs shorter than a
/// trip through Redis (their size fixed by the caller, or a map too short
/// to cut them larger), as many more as cover that trip: a host's worker
/// would otherwise wait for its next one. Batches of many inputs need none:
/// the chunker makes them as long as it wants, and more of them in flight
/// measured no faster, only more memory in Redis. Two, the least, while the workers are fewer than the
/// relays; bounded, so that what waits in Redis stays bounded.
pub(super) struct Depth {
    relays: usize,
    /// A batch's time on its host's worker, smoothed, in ns (0: none yet).
    batch_ns: AtomicU64,
    /// A batch's `Run` message, smoothed, in bytes.
    batch_bytes: AtomicU64,
    /// A batch's inputs, smoothed.
    batch_inputs: AtomicU64,
    /// What the driver reads: the depth, and the workers of the hosts
    /// that hold a live lease, as last seen.
    now: Arc<Relayed>,
}

impl Depth {
    /// The most a relay holds: with the default 8 relays, 512 batches.
    const MAX: usize = 64;
    /// How long a batch must run for a host's worker not to wait for the
    /// next: shorter ones get more batches in flight, enough to fill this.
    /// Measured (BENCHMARKS.md, "Issue 12, sixth part"): `chunk_size(1)`
    /// squares at 0.16x R1 with no batches more, 0.39–0.41x with them; 2 ms
    /// here did no better for them and left the tiny `map` slower in two
    /// runs of two (0.85–0.92x R2 against 1.00–1.06x).
    const TRIP: Duration = Duration::from_micros(250);
    /// The bytes the batches beyond two per worker may add to Redis, for
    /// batches of the size measured (twice this for those twice as large).
    const EXTRA_BYTES: u64 = 16 << 20;
    /// Batches of at most this many inputs may have more in flight.
    const FEW: u64 = 64;

    pub(super) fn new(relays: usize) -> Depth {
        Depth {
            relays: relays.max(1),
            batch_ns: AtomicU64::new(0),
            batch_bytes: AtomicU64::new(0),
            batch_inputs: AtomicU64::new(0),
            now: Arc::new(Relayed {
                depth: AtomicUsize::new(2),
                base: AtomicUsize::new(2),
                ..Relayed::default()
            }),
        }
    }

    /// `workers` workers serve the pool now.
    pub(super) fn follow(&self, workers: usize) {
        self.now.workers.store(workers, Ordering::Relaxed);
        self.size();
    }

    /// A batch of `inputs` inputs in `bytes` came back whole, having run
    /// `nanos` on its host. Only the reply reader calls it: loads and
    /// stores suffice.
    pub(super) fn observe(&self, nanos: u64, bytes: usize, inputs: usize) {
        let smooth = |a: &AtomicU64, v: u64| {
            let was = a.load(Ordering::Relaxed);
            a.store(if was == 0 { v.max(1) } else { (was * 7 + v) / 8 }.max(1), Ordering::Relaxed);
        };
        smooth(&self.batch_ns, nanos);
        smooth(&self.batch_bytes, bytes as u64);
        smooth(&self.batch_inputs, inputs as u64);
        self.size();
    }

    fn size(&self) {
        let workers = self.now.workers.load(Ordering::Relaxed);
        let (ns, bytes) = (self.batch_ns.load(Ordering::Relaxed), self.batch_bytes.load(Ordering::Relaxed));
        let per_relay = |total: usize| total.div_ceil(self.relays).clamp(2, Self::MAX);
        let base = per_relay(2 * workers);
        let mut depth = base;
        // A worker keeps busy with a trip's worth of batches on the way:
        // batches no larger than twice those measured, the extra bytes
        // thus within twice `EXTRA_BYTES`.
        let few = self.batch_inputs.load(Ordering::Relaxed) <= Self::FEW;
        if let Some(cover) = (Self::TRIP.as_nanos() as u64).checked_div(ns).filter(|_| few) {
            let within = Self::EXTRA_BYTES / bytes.max(1);
            depth = per_relay(2 * workers + (workers * cover as usize).min(within as usize));
            self.now.small_inputs.store(Self::FEW, Ordering::Relaxed);
            self.now.small_bytes.store(bytes.saturating_mul(2), Ordering::Relaxed);
        }
        self.now.base.store(base, Ordering::Relaxed);
        self.now.depth.store(depth, Ordering::Relaxed);
    }

    /// What the driver reads (`Transport::relayed`).
    pub(super) fn handle(&self) -> Arc<Relayed> {
        self.now.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relays_hold_two_batches_per_host_worker_within_bounds() {
        let d = Depth::new(8);
        let relayed = d.handle();
        let at = || relayed.depth.load(Ordering::Relaxed);
        assert_eq!(at(), 2, "before any host is seen");
        d.follow(3);
        assert_eq!(at(), 2, "fewer workers than relays: the least");
        d.follow(12);
        assert_eq!(at(), 3, "8 relays x 3 >= 2 x 12");
        d.follow(100_000);
        assert_eq!(at(), Depth::MAX);
        d.follow(0);
        assert_eq!(at(), 2, "every host gone");
        // Batches of 10 µs: two per worker, and 25 more to cover a trip.
        d.follow(8);
        d.observe(10_000, 64, 1);
        assert_eq!(at(), 27);
        assert_eq!(relayed.depth_for(64, 128), 27);
        // A map's batches grow faster than what comes back shows: one
        // larger goes by two per worker at once.
        assert_eq!(relayed.depth_for(5_000, 40_000), 2);
        // Long ones: two per worker again, as they come.
        for _ in 0..100 {
            d.observe(50_000_000, 64, 1);
        }
        assert_eq!(at(), 2);
        // Short, but large: the extra batches stay within their bytes.
        for _ in 0..100 {
            d.observe(1_000, 8 << 20, 1);
        }
        assert_eq!(at(), 3, "(16 + 2) / 8");
        assert_eq!(relayed.depth_for(1, 15 << 20), 3, "within twice the size measured");
        assert_eq!(relayed.depth_for(1, 17 << 20), 2, "larger: two per worker");
        assert_eq!(relayed.depth_for(65, 64), 2, "more inputs: two per worker");
        // Short batches of many inputs: the chunker's to make longer.
        for _ in 0..100 {
            d.observe(1_000, 64, 5_000);
        }
        assert_eq!(at(), 2);
    }
}
