//! The rolling window: a ring of time buckets counted with atomics.
//!
//! Time is cut into buckets of a fixed length, numbered from the layer's
//! start (the bucket's *epoch*). The ring holds the last `n` of them. Each
//! counter of a bucket is one `AtomicU64` holding the epoch it belongs to (high
//! 32 bits) and its count (low 32 bits), so that moving a slot on to a new
//! epoch and counting in it is one compare-and-swap: no count is lost when
//! threads race at a bucket boundary, and no lock is taken.
//!
//! A counter whose epoch is not one of the last `n` is stale and reads as
//! zero. Epochs are compared modulo 2³²; with buckets of at least 10 ms, a
//! slot would have to stay untouched for more than 400 days to be misread,
//! longer than the longest idle timeout after which the key is forgotten.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counts of a window at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// A ring of time buckets.
#[derive(Debug)]
pub(crate) struct Window {
    buckets: Box<[Bucket]>,
}

impl Window {
    pub(crate) fn new(buckets: u32) -> Self {
        Window {
            buckets: (0..buckets.max(1)).map(|_| Bucket::default()).collect(),
        }
    }

    fn slot(&self, epoch: u64) -> &Bucket {
        &self.buckets[(epoch % self.buckets.len() as u64) as usize]
    }

    /// Counts one call in the bucket of `epoch`.
    pub(crate) fn record(&self, epoch: u64, failure: bool, slow: bool) {
        let bucket = self.slot(epoch);
        let epoch = epoch as u32;
        // Calls first, so that a concurrent reader never sees more failures
        // than calls in a bucket.
        // A late call lands in the epoch its calls counter is on; the other
        // counters follow it.
        let epoch = bump(&bucket.calls, epoch);
        if failure {
            bump(&bucket.failures, epoch);
        }
        if slow {
            bump(&bucket.slow, epoch);
        }
    }

    /// The counts of the buckets that are still in the window at `epoch`.
    pub(crate) fn counts(&self, epoch: u64) -> Counts {
        let n = self.buckets.len() as u32;
        let epoch = epoch as u32;
        let read = |c: &AtomicU64| {
            let v = c.load(Ordering::Acquire);
            if epoch.wrapping_sub((v >> 32) as u32) < n {
                v & u64::from(u32::MAX)
            } else {
                0
            }
        };
        let mut counts = Counts::default();
        for b in self.buckets.iter() {
            counts.calls += read(&b.calls);
            counts.failures += read(&b.failures);
            counts.slow += read(&b.slow);
        }
        counts.failures = counts.failures.min(counts.calls);
        counts.slow = counts.slow.min(counts.calls);
        counts
    }

    /// Forgets every count.
    pub(crate) fn reset(&self) {
        for b in self.buckets.iter() {
            b.calls.store(0, Ordering::Release);
            b.failures.store(0, Ordering::Release);
            b.slow.store(0, Ordering::Release);
        }
    }
}

/// How far ahead (in buckets) a counter may be and still take a late count.
const MAX_LATE: u32 = 1 << 20;

/// Below this count a counter takes a plain `fetch_add`: concurrent adds
/// cannot carry into the epoch bits.
const FAST_MAX: u64 = 1 << 31;

/// Adds one to a counter of `epoch`, restarting it at one when it holds an
/// older epoch (or nothing). A counter already on a newer epoch (this thread
/// was preempted across a bucket boundary) takes the count: it is not lost.
/// Returns the epoch counted in.
///
/// The common case, a counter already on this epoch (or a newer one) and far
/// from full, is one `fetch_add`: a count that races with a move to a newer
/// epoch lands in that epoch, as a late count does.
fn bump(counter: &AtomicU64, epoch: u32) -> u32 {
    let mut cur = counter.load(Ordering::Relaxed);
    let count = cur & u64::from(u32::MAX);
    if count > 0 && count < FAST_MAX && ((cur >> 32) as u32).wrapping_sub(epoch) < MAX_LATE {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        return (before >> 32) as u32;
    }
    loop {
        let cur_epoch = (cur >> 32) as u32;
        let count = cur & u64::from(u32::MAX);
        let next = if count > 0 && cur_epoch.wrapping_sub(epoch) < MAX_LATE {
            // This epoch, or a newer one: count in it (saturating).
            (u64::from(cur_epoch) << 32) | (count + 1).min(u64::from(u32::MAX))
        } else {
            (u64::from(epoch) << 32) | 1
        };
        match counter.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return (next >> 32) as u32,
            Err(actual) => cur = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_expire_bucket_by_bucket() {
        let w = Window::new(3);
        w.record(0, true, false);
        w.record(1, false, true);
        w.record(2, true, true);
        assert_eq!(
            w.counts(2),
            Counts {
                calls: 3,
                failures: 2,
                slow: 2
            }
        );
        assert_eq!(
            w.counts(3),
            Counts {
                calls: 2,
                failures: 1,
                slow: 2
            }
        );
        assert_eq!(
            w.counts(4),
            Counts {
                calls: 1,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(w.counts(5), Counts::default());
        // A slot reused for a new epoch starts from zero.
        w.record(3, false, false);
        assert_eq!(
            w.counts(3),
            Counts {
                calls: 3,
                failures: 1,
                slow: 2
            }
        );
        w.reset();
        assert_eq!(w.counts(3), Counts::default());
    }

    #[test]
    fn a_late_record_lands_in_the_newer_bucket() {
        let w = Window::new(2);
        w.record(5, false, false);
        w.record(3, true, false); // same slot, older epoch: counted in epoch 5
        assert_eq!(
            w.counts(5),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn epochs_wrap() {
        let w = Window::new(4);
        let e = u64::from(u32::MAX);
        w.record(e, true, false);
        w.record(e + 1, false, false);
        assert_eq!(
            w.counts(e + 2),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
    }

    proptest! {
        #[test]
        fn matches_a_naive_window(
            n in 1u32..8,
            events in proptest::collection::vec((0u64..6, any::<bool>(), any::<bool>()), 0..60),
        ) {
            let w = Window::new(n);
            let mut epoch = 0u64;
            let mut log: Vec<(u64, bool, bool)> = Vec::new();
            for (step, failure, slow) in events {
                epoch += step;
                w.record(epoch, failure, slow);
                log.push((epoch, failure, slow));
                let live = log.iter().filter(|(e, _, _)| epoch - e < u64::from(n));
                let want = live.fold(Counts::default(), |mut c, (_, f, s)| {
                    c.calls += 1;
                    c.failures += u64::from(*f);
                    c.slow += u64::from(*s);
                    c
                });
                prop_assert_eq!(w.counts(epoch), want);
            }
        }
    }
}
