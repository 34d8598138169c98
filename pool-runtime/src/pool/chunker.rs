//! How many inputs go in the next frame: the adaptive chunker.

/// Aim for this much work per frame, so that per-frame costs vanish but
/// workers stay balanced and outcomes keep flowing.
const TARGET_BATCH_NANOS: f64 = 2_000_000.0;
const MAX_CHUNK: u32 = 1 << 16;
/// Picks how many inputs go in the next frame, from how long frames take.
#[derive(Debug)]
pub(super) struct Chunker {
    fixed: Option<u32>,
    size: u32,
    cap: u32,
    /// Smoothed cost of one item, in ns, once measured.
    per_item: Option<f64>,
}

impl Chunker {
    /// With a known number of inputs, a frame holds at most 1/32 of a
    /// worker's share: cheap tasks reach 2 ms of worker time only in frames
    /// so large (65,536 tiny items) that the driver, which spends more per
    /// item than the workers, makes them wait at the start and the end of
    /// each frame. Measured on `tiny` (1 M squares, 2 workers, four
    /// alternating runs each): a share of 1/4 gave 18.3–19.0 M/s, 1/16
    /// 21.5–23.5, 1/32 23.3–24.3 M/s.
    pub(super) fn new(fixed: Option<usize>, hint: Option<usize>, workers: usize) -> Self {
        let cap = hint.map_or(MAX_CHUNK, |n| {
            (n / (workers * 32)).clamp(1, MAX_CHUNK as usize) as u32
        });
        Chunker {
            fixed: fixed.map(|n| n as u32),
            size: 1,
            cap,
            per_item: None,
        }
    }

    pub(super) fn size(&self) -> u32 {
        self.fixed.unwrap_or(self.size)
    }

    pub(super) fn observe(&mut self, count: u32, nanos: f64) {
        let per = (nanos / count as f64).max(1.0);
        let per = match self.per_item {
            Some(old) => 0.7 * old + 0.3 * per,
            None => per,
        };
        self.per_item = Some(per);
        let ideal = (TARGET_BATCH_NANOS / per) as u64;
        self.size = ideal.clamp(1, (self.size as u64 * 8).min(self.cap as u64)) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one_input_then_aims_for_two_milliseconds_a_frame() {
        let mut c = Chunker::new(None, None, 2);
        assert_eq!(c.size(), 1);
        // 1 µs an item: 2,000 items make 2 ms, reached in steps of at most 8x.
        let mut sizes = Vec::new();
        for _ in 0..6 {
            let n = c.size();
            c.observe(n, n as f64 * 1_000.0);
            sizes.push(c.size());
        }
        assert_eq!(sizes, vec![8, 64, 512, 2000, 2000, 2000]);
    }

    #[test]
    fn a_slow_item_shrinks_the_next_frame_at_once() {
        let mut c = Chunker::new(None, None, 2);
        for _ in 0..5 {
            let n = c.size();
            c.observe(n, n as f64 * 1_000.0);
        }
        // A frame of 2,000 that took 2 s: 1 ms an item, smoothed to 0.3 ms.
        c.observe(2_000, 2e9);
        assert_eq!(c.size(), 6);
    }

    #[test]
    fn a_known_length_caps_a_frame_at_a_thirty_second_of_a_workers_share() {
        let mut c = Chunker::new(None, Some(64_000), 2);
        for _ in 0..10 {
            let n = c.size();
            c.observe(n, n as f64);
        }
        assert_eq!(c.size(), 1_000);
        let tiny = Chunker::new(None, Some(3), 8);
        assert_eq!(tiny.size(), 1);
    }

    #[test]
    fn never_more_than_the_largest_chunk_and_a_fixed_size_stays() {
        let mut c = Chunker::new(None, None, 1);
        for _ in 0..10 {
            let n = c.size();
            c.observe(n, 0.0);
        }
        assert_eq!(c.size(), MAX_CHUNK);
        let mut fixed = Chunker::new(Some(16), None, 2);
        fixed.observe(16, 1e9);
        assert_eq!(fixed.size(), 16);
    }
}
