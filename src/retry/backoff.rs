//! How long to wait between attempts: [`Backoff`] (the growth of the wait)
//! and [`Jitter`] (its randomisation).

use std::time::Duration;

use crate::util::saturating_nanos;

/// How the wait before a retry grows with the number of retries.
///
/// The wait before retry `n` (counting from 0) is
///
/// | backoff | wait |
/// |---|---|
/// | [`exponential(base, max)`](Backoff::exponential) | `min(base × factor^n, max)`, factor 2 unless [set](Backoff::with_factor) |
/// | [`linear(base, step, max)`](Backoff::linear) | `min(base + n × step, max)` |
/// | [`constant(delay)`](Backoff::constant) | `delay` |
///
/// The wait never exceeds `max`, whatever the inputs (the arithmetic
/// saturates). [`Jitter`] is applied on top; a server's hint
/// (`retry-after` and friends) replaces both.
///
/// The default is exponential from 500 ms, doubling, capped at 8 s: the
/// values of the official OpenAI SDKs, which OpenAI-compatible upstreams
/// expect from their clients (0.5 s, 1 s, 2 s, 4 s, 8 s, 8 s…).
///
/// A wait of `min(2^n, 60)` seconds is
/// `Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60))`
/// with [`Jitter::none`]:
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::retry::Backoff;
///
/// let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60));
/// let waits: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
/// assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    kind: Kind,
    base: Duration,
    max: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Exponential { factor: f64 },
    Linear { step: Duration },
    Constant,
}

impl Backoff {
    /// Waits `base`, then doubles the wait after each retry, up to `max`.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff {
            kind: Kind::Exponential { factor: 2.0 },
            base,
            max,
        }
    }

    /// Sets the growth factor of an exponential backoff (default 2).
    ///
    /// A factor below 1, or not a finite number, is taken as 1 (a constant
    /// wait of `base`). The call changes nothing on a linear or constant
    /// backoff.
    pub fn with_factor(mut self, factor: f64) -> Self {
        if let Kind::Exponential { factor: f } = &mut self.kind {
            *f = if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            };
        }
        self
    }

    /// Waits `base`, then `step` longer after each retry, up to `max`.
    pub fn linear(base: Duration, step: Duration, max: Duration) -> Self {
        Backoff {
            kind: Kind::Linear { step },
            base,
            max,
        }
    }

    /// Waits `delay` before every retry.
    pub fn constant(delay: Duration) -> Self {
        Backoff {
            kind: Kind::Constant,
            base: delay,
            max: delay,
        }
    }

    /// The first wait.
    pub fn base(&self) -> Duration {
        self.base.min(self.max)
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The wait before retry `retry` (0 for the first retry), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let d = match self.kind {
            Kind::Constant => self.base,
            Kind::Linear { step } => step
                .checked_mul(retry)
                .and_then(|s| self.base.checked_add(s))
                .unwrap_or(self.max),
            Kind::Exponential { factor } => {
                let exp = i32::try_from(retry).unwrap_or(i32::MAX);
                let nanos = self.base.as_nanos() as f64 * factor.powi(exp);
                if nanos.is_finite() && nanos < self.max.as_nanos() as f64 {
                    duration_from_nanos(nanos as u128)
                } else {
                    self.max
                }
            }
        };
        d.min(self.max)
    }
}

impl Default for Backoff {
    /// Exponential from 500 ms, doubling, capped at 8 s.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(500), Duration::from_secs(8))
    }
}

/// How the backoff's wait is randomised, so that clients that failed
/// together do not retry together.
///
/// | jitter | wait for a backoff of `d` |
/// |---|---|
/// | [`none`](Jitter::none) | `d` |
/// | [`full`](Jitter::full) | uniform in `[0, d]` |
/// | [`equal`](Jitter::equal) | `d/2` + uniform in `[0, d/2]` |
/// | [`decorrelated`](Jitter::decorrelated) | uniform in `[base, 3 × previous wait]`, at most the backoff's `max` (the backoff's growth is not used) |
/// | [`up_to_shorter(f)`](Jitter::up_to_shorter) | `d × (1 − f × uniform[0, 1])` |
///
/// The default is `up_to_shorter(0.25)`, the official OpenAI SDK's: waits
/// stay close to the backoff (predictable, never longer), yet spread out.
/// A server's hint is never jittered.
///
/// ```
/// use tower_http_resilience::retry::{Jitter, RetryLayer};
///
/// let layer = RetryLayer::new().jitter(Jitter::full());
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter(JitterKind);

#[derive(Clone, Copy, Debug, PartialEq)]
enum JitterKind {
    None,
    Full,
    Equal,
    Decorrelated,
    Shorter(f64),
}

impl Jitter {
    /// The backoff's wait as is.
    pub const fn none() -> Self {
        Jitter(JitterKind::None)
    }

    /// "Full jitter": a uniform wait between zero and the backoff's.
    pub const fn full() -> Self {
        Jitter(JitterKind::Full)
    }

    /// "Equal jitter": half the backoff's wait, plus up to the other half.
    pub const fn equal() -> Self {
        Jitter(JitterKind::Equal)
    }

    /// "Decorrelated jitter": a uniform wait between the backoff's base and
    /// three times the previous wait, capped at the backoff's max.
    pub const fn decorrelated() -> Self {
        Jitter(JitterKind::Decorrelated)
    }

    /// The backoff's wait made up to `fraction` shorter (`0.25`: between 75%
    /// and 100% of it). A fraction outside `[0, 1]` is clamped; not a number
    /// is 0.
    pub fn up_to_shorter(fraction: f64) -> Self {
        let f = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        Jitter(JitterKind::Shorter(f))
    }

    /// The wait before retry `retry` under `backoff`, given the previous wait
    /// (used by decorrelated jitter) and a random source.
    pub(crate) fn delay(
        &self,
        backoff: &Backoff,
        retry: u32,
        previous: Duration,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let uniform = |rng: &mut fastrand::Rng, lo: Duration, hi: Duration| -> Duration {
            let (lo, hi) = (saturating_nanos(lo), saturating_nanos(hi));
            if hi <= lo {
                Duration::from_nanos(lo)
            } else {
                Duration::from_nanos(rng.u64(lo..=hi))
            }
        };
        let d = match self.0 {
            JitterKind::None => backoff.delay(retry),
            JitterKind::Full => uniform(rng, Duration::ZERO, backoff.delay(retry)),
            JitterKind::Equal => {
                let d = backoff.delay(retry);
                let half = d / 2;
                half + uniform(rng, Duration::ZERO, d - half)
            }
            JitterKind::Decorrelated => {
                let base = backoff.base();
                let prev = if retry == 0 { base } else { previous.max(base) };
                uniform(rng, base, prev.saturating_mul(3))
            }
            JitterKind::Shorter(f) => {
                let d = backoff.delay(retry);
                let cut = saturating_nanos(d) as f64 * f * rng.f64();
                d.saturating_sub(Duration::from_nanos(cut as u64))
            }
        };
        d.min(backoff.max())
    }
}

impl Default for Jitter {
    /// Up to 25% shorter, as the official OpenAI SDK does.
    fn default() -> Self {
        Jitter::up_to_shorter(0.25)
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn default_is_the_openai_sdk_schedule() {
        let b = Backoff::default();
        let waits: Vec<_> = (0..7).map(|n| b.delay(n)).collect();
        assert_eq!(
            waits,
            [
                500 * MS,
                1000 * MS,
                2000 * MS,
                4000 * MS,
                8000 * MS,
                8000 * MS,
                8000 * MS
            ]
        );
        assert_eq!(Jitter::default(), Jitter::up_to_shorter(0.25));
    }

    #[test]
    fn linear_and_constant() {
        let b = Backoff::linear(100 * MS, 250 * MS, Duration::from_secs(1));
        let waits: Vec<_> = (0..6).map(|n| b.delay(n)).collect();
        assert_eq!(
            waits,
            [100 * MS, 350 * MS, 600 * MS, 850 * MS, 1000 * MS, 1000 * MS]
        );
        let c = Backoff::constant(300 * MS);
        assert!((0..10).all(|n| c.delay(n) == 300 * MS));
        assert_eq!(
            Backoff::linear(MS, Duration::MAX, Duration::MAX).delay(u32::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn factor_is_validated() {
        let b = Backoff::exponential(100 * MS, Duration::from_secs(10)).with_factor(1.5);
        assert_eq!(b.delay(2), 225 * MS);
        for bad in [f64::NAN, f64::INFINITY, -3.0, 0.5] {
            let b = Backoff::exponential(100 * MS, Duration::from_secs(10)).with_factor(bad);
            assert_eq!(b.delay(5), 100 * MS, "{bad}");
        }
    }

    #[test]
    fn base_above_max_is_capped() {
        let b = Backoff::exponential(Duration::from_secs(30), Duration::from_secs(5));
        assert_eq!(b.delay(0), Duration::from_secs(5));
        assert_eq!(b.base(), Duration::from_secs(5));
    }

    #[test]
    fn jitter_ranges() {
        let mut rng = fastrand::Rng::with_seed(7);
        let b = Backoff::constant(Duration::from_secs(4));
        for _ in 0..1000 {
            let full = Jitter::full().delay(&b, 0, Duration::ZERO, &mut rng);
            assert!(full <= Duration::from_secs(4));
            let equal = Jitter::equal().delay(&b, 0, Duration::ZERO, &mut rng);
            assert!(equal >= Duration::from_secs(2) && equal <= Duration::from_secs(4));
            let shorter = Jitter::up_to_shorter(0.25).delay(&b, 0, Duration::ZERO, &mut rng);
            assert!(shorter >= Duration::from_secs(3) && shorter <= Duration::from_secs(4));
        }
        assert_eq!(
            Jitter::none().delay(&b, 3, Duration::ZERO, &mut rng),
            Duration::from_secs(4)
        );
        assert_eq!(Jitter::up_to_shorter(f64::NAN), Jitter::up_to_shorter(0.0));
        assert_eq!(Jitter::up_to_shorter(7.0), Jitter::up_to_shorter(1.0));
    }

    #[test]
    fn decorrelated_grows_from_the_previous_wait() {
        let mut rng = fastrand::Rng::with_seed(1);
        let b = Backoff::exponential(100 * MS, Duration::from_secs(20));
        let mut prev = Duration::ZERO;
        let mut seen_growth = false;
        for n in 0..50 {
            let d = Jitter::decorrelated().delay(&b, n, prev, &mut rng);
            let upper = if n == 0 {
                300 * MS
            } else {
                (prev.max(100 * MS) * 3).min(Duration::from_secs(20))
            };
            assert!(
                d >= 100 * MS && d <= upper,
                "retry {n}: {d:?} not in [100ms, {upper:?}]"
            );
            seen_growth |= d > Duration::from_secs(1);
            prev = d;
        }
        assert!(seen_growth);
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        let d = || (0u64..u64::MAX).prop_map(Duration::from_nanos);
        prop_oneof![
            (d(), d(), any::<f64>())
                .prop_map(|(b, m, f)| Backoff::exponential(b, m).with_factor(f)),
            (d(), d(), d()).prop_map(|(b, s, m)| Backoff::linear(b, s, m)),
            d().prop_map(Backoff::constant),
        ]
    }

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::none()),
            Just(Jitter::full()),
            Just(Jitter::equal()),
            Just(Jitter::decorrelated()),
            any::<f64>().prop_map(Jitter::up_to_shorter),
        ]
    }

    proptest! {
        #[test]
        fn never_exceeds_the_cap(b in any_backoff(), j in any_jitter(), n in any::<u32>(),
                                 prev in any::<u64>(), seed in any::<u64>()) {
            let mut rng = fastrand::Rng::with_seed(seed);
            prop_assert!(b.delay(n) <= b.max());
            prop_assert!(j.delay(&b, n, Duration::from_nanos(prev), &mut rng) <= b.max());
        }

        #[test]
        fn exponential_is_monotonic(base in 0u64..10_000_000_000, max in 0u64..100_000_000_000, n in 0u32..200) {
            let b = Backoff::exponential(Duration::from_nanos(base), Duration::from_nanos(max));
            prop_assert!(b.delay(n) <= b.delay(n + 1));
        }
    }
}
