//! [`RetryBudget`]: retries as a bounded fraction of recent requests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How many slots the window is cut into.
const SLOTS: u32 = 10;

/// Bounds retries to a fraction of recent requests, so that a dead upstream
/// never sees a retry storm.
///
/// Every request the retry layer receives deposits one request into the
/// budget; every retry withdraws one. A retry is allowed while the retries of
/// the last `ttl` stay below
///
/// ```text
/// min_per_sec × ttl  +  retry_ratio × requests of the last ttl
/// ```
///
/// These are the semantics of Finagle's `RetryBudget` and tower's
/// `TpsBudget`, with the same defaults ([`RetryBudget::default`]: 20% of the
/// requests of the last 10 s, plus 10 retries per second so that a client
/// that has just started, or sends little, can still retry).
///
/// The window is a ring of ten time slots of `ttl / 10` each, on tokio's
/// clock; requests and retries older than `ttl` fall out as their slot is
/// reused. Counting is lock-free (one atomic per slot and counter). Under
/// heavy concurrency a few withdrawals may race past the limit at the same
/// instant; the bound holds up to that.
///
/// One budget is shared by every service a [`RetryLayer`](super::RetryLayer)
/// makes and by all their clones (the layer holds it in an `Arc`); two layers
/// may share one by passing the same `Arc` to
/// [`RetryLayer::budget`](super::RetryLayer::budget).
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // 10% of the requests of the last 30 s, and 1 retry per second.
/// let budget = RetryBudget::new(Duration::from_secs(30), 1, 0.1);
/// assert_eq!(budget.available(), 30);
/// # }
/// ```
pub struct RetryBudget {
    limits: Option<Limits>,
    start: Instant,
    slot_nanos: u64,
    deposits: [AtomicU64; SLOTS as usize],
    withdrawals: [AtomicU64; SLOTS as usize],
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Retries always allowed per window.
    reserve: u64,
    /// Retries per 1000 requests.
    per_mille: u64,
}

impl RetryBudget {
    /// A budget over a window of `ttl` (clamped to 1 s ..= 60 s, as Finagle
    /// does), allowing `min_per_sec` retries per second plus `retry_ratio`
    /// retries per request (clamped to 0 ..= 1000; not a number is 0).
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f32) -> Self {
        let ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if retry_ratio.is_nan() {
            0.0
        } else {
            retry_ratio.clamp(0.0, 1000.0)
        };
        let reserve = (f64::from(min_per_sec) * ttl.as_secs_f64()).ceil() as u64;
        let per_mille = (f64::from(ratio) * 1000.0).round() as u64;
        Self::with_limits(ttl, Some(Limits { reserve, per_mille }))
    }

    /// A budget that allows every retry (the retry count is then bounded only
    /// by [`RetryLayer::max_retries`](super::RetryLayer::max_retries)).
    pub fn unlimited() -> Self {
        Self::with_limits(Duration::from_secs(10), None)
    }

    fn with_limits(ttl: Duration, limits: Option<Limits>) -> Self {
        RetryBudget {
            limits,
            start: Instant::now(),
            slot_nanos: (ttl.as_nanos() / u128::from(SLOTS)).max(1) as u64,
            deposits: Default::default(),
            withdrawals: Default::default(),
        }
    }

    /// How many retries the budget allows right now (`u64::MAX` when
    /// unlimited).
    pub fn available(&self) -> u64 {
        let Some(limits) = self.limits else {
            return u64::MAX;
        };
        let tick = self.tick();
        limits
            .allowed(sum(&self.deposits, tick))
            .saturating_sub(sum(&self.withdrawals, tick))
    }

    /// Records one request.
    #[cfg(test)]
    pub(crate) fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Records one request, made at `now`.
    pub(crate) fn deposit_at(&self, now: Instant) {
        if self.limits.is_some() {
            let tick = self.tick_at(now);
            let slot = &self.deposits[(tick % SLOTS) as usize];
            let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(bump(cur, tick))
            });
        }
    }

    /// Takes one retry from the budget; `false` when none is left.
    pub(crate) fn withdraw(&self) -> bool {
        let Some(limits) = self.limits else {
            return true;
        };
        let tick = self.tick();
        let slot = &self.withdrawals[(tick % SLOTS) as usize];
        loop {
            let cur = slot.load(Ordering::Acquire);
            let allowed = limits.allowed(sum(&self.deposits, tick));
            if sum(&self.withdrawals, tick) >= allowed {
                return false;
            }
            // Counted only if no other withdrawal landed in between.
            if slot
                .compare_exchange(cur, bump(cur, tick), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// The current slot number (wrapping).
    fn tick(&self) -> u32 {
        self.tick_at(Instant::now())
    }

    /// The slot number of `at` (wrapping).
    fn tick_at(&self, at: Instant) -> u32 {
        let elapsed = at.saturating_duration_since(self.start).as_nanos();
        (elapsed / u128::from(self.slot_nanos)) as u32
    }
}

impl Limits {
    fn allowed(&self, deposits: u64) -> u64 {
        self.reserve
            .saturating_add(deposits.saturating_mul(self.per_mille) / 1000)
    }
}

// A slot packs the tick it counts for (high 32 bits) and its count (low 32).
fn bump(cur: u64, tick: u32) -> u64 {
    let (t, count) = ((cur >> 32) as u32, cur as u32);
    let count = if t == tick || is_after(t, tick) {
        // Same slot, or a racing caller already moved it on: count there.
        count.saturating_add(1)
    } else {
        1
    };
    let t = if is_after(t, tick) { t } else { tick };
    (u64::from(t) << 32) | u64::from(count)
}

fn is_after(t: u32, tick: u32) -> bool {
    t != tick && t.wrapping_sub(tick) < SLOTS
}

fn sum(slots: &[AtomicU64; SLOTS as usize], tick: u32) -> u64 {
    slots
        .iter()
        .map(|s| {
            let v = s.load(Ordering::Acquire);
            let (t, count) = ((v >> 32) as u32, v as u32);
            let live = tick.wrapping_sub(t) < SLOTS || is_after(t, tick);
            if live {
                u64::from(count)
            } else {
                0
            }
        })
        .sum()
}

impl Default for RetryBudget {
    /// 20% of the requests of the last 10 s, plus 10 retries per second
    /// (Finagle's and tower's defaults).
    fn default() -> Self {
        RetryBudget::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RetryBudget");
        match self.limits {
            Some(l) => d
                .field(
                    "window",
                    &Duration::from_nanos(self.slot_nanos.saturating_mul(u64::from(SLOTS))),
                )
                .field("reserve", &l.reserve)
                .field("retry_per_mille", &l.per_mille)
                .field("available", &self.available()),
            None => d.field("unlimited", &true),
        };
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reserve_then_ratio() {
        let b = RetryBudget::new(Duration::from_secs(10), 1, 0.2);
        assert_eq!(b.available(), 10);
        for _ in 0..10 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw(), "the reserve is spent");
        for _ in 0..4 {
            b.deposit();
        }
        assert!(!b.withdraw(), "4 requests at 20% allow no retry yet");
        b.deposit();
        assert!(b.withdraw(), "the 5th request allows one");
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn old_slots_expire() {
        let b = RetryBudget::new(Duration::from_secs(10), 1, 0.0);
        for _ in 0..10 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw());
        tokio::time::advance(Duration::from_millis(5_000)).await;
        assert!(!b.withdraw(), "still inside the window");
        tokio::time::advance(Duration::from_millis(5_001)).await;
        assert_eq!(b.available(), 10, "the window moved past the withdrawals");
        // A long pause (many laps of the ring) leaves nothing stale behind.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(b.available(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_inputs_are_clamped() {
        let b = RetryBudget::new(Duration::ZERO, u32::MAX, f32::NAN);
        assert_eq!(b.available(), u64::from(u32::MAX), "ttl clamped to 1 s");
        let b = RetryBudget::new(Duration::MAX, 0, f32::INFINITY);
        assert_eq!(b.available(), 0);
        b.deposit();
        assert_eq!(b.available(), 1000, "ratio clamped to 1000");
        assert_eq!(RetryBudget::unlimited().available(), u64::MAX);
        assert!(RetryBudget::unlimited().withdraw());
        assert!(format!("{:?}", RetryBudget::default()).contains("reserve: 100"));
    }

    #[test]
    fn slot_packing() {
        assert_eq!(bump(0, 0), 1);
        assert_eq!(bump(bump(0, 3), 3), (3 << 32) | 2);
        assert_eq!(
            bump((3 << 32) | 9, 13),
            (13 << 32) | 1,
            "a stale slot restarts"
        );
        assert_eq!(
            bump((14 << 32) | 9, 13),
            (14 << 32) | 10,
            "a newer slot keeps counting"
        );
        assert_eq!(
            bump(u64::from(u32::MAX), 0),
            u64::from(u32::MAX),
            "counts saturate"
        );
    }

    #[test]
    fn concurrent_withdrawals_stay_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let b = std::sync::Arc::new(RetryBudget::new(Duration::from_secs(10), 5, 0.0));
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let _guard = rt.enter();
                    for _ in 0..100 {
                        if b.withdraw() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.load(Ordering::Relaxed), 50);
    }
}
