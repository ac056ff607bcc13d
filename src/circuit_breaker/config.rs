//! The settings of a circuit breaker, with defaults and bounds.

use std::fmt;
use std::time::Duration;

use crate::util::{fnv1a, saturating_nanos, truncate};

/// The settings every breaker of one [`CircuitBreakerLayer`] uses.
///
/// Built with setters on [`CircuitBreakerConfig::default`]; every setter
/// clamps an absurd value into a sensible range instead of panicking (see each
/// setter). The defaults and their reasons:
///
/// | setting | default | why |
/// |---|---|---|
/// | [`window`](Self::window) | 30 s in 10 buckets | long enough to see a trend at a few calls per second, short enough to forget an incident within a minute |
/// | [`min_calls`](Self::min_calls) | 10 | a ratio over fewer calls is noise: two failures out of three must not open a breaker |
/// | [`failure_ratio`](Self::failure_ratio) | 0.5 | half the calls failing is an upstream problem, not bad luck |
/// | [`consecutive_failures`](Self::consecutive_failures) | off | the ratio already covers it; turn it on for low-traffic keys that never reach `min_calls` |
/// | [`slow_calls`](Self::slow_calls) | off | what "slow" means depends on the upstream (an LLM may take a minute to answer) |
/// | [`open_duration`](Self::open_duration) | 30 s, doubled per repeated trip up to 5 min, ±10 % jitter | long enough for an upstream to recover, and jitter keeps many gateways from probing in step |
/// | [`half_open_probes`](Self::half_open_probes) | 1 probe in flight, 1 success closes | calls to AI upstreams are expensive; one successful call is enough evidence |
/// | [`max_keys`](Self::max_keys) | 10 000 | bounds memory (about half a KiB per key with the default window) whatever the key cardinality |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min | a key not seen for that long is forgotten |
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
///
/// // A low-traffic key: open after 3 failures in a row, or half of 5 calls.
/// let config = CircuitBreakerConfig::new()
///     .window(Duration::from_secs(60), 12)
///     .min_calls(5)
///     .consecutive_failures(Some(3))
///     .open_duration(Duration::from_secs(10), Duration::from_secs(120), 0.1);
/// let layer = CircuitBreakerLayer::with_config(config.clone());
/// assert_eq!(layer.config(), &config);
/// ```
///
/// [`CircuitBreakerLayer`]: super::CircuitBreakerLayer
#[derive(Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    pub(crate) window: Duration,
    pub(crate) buckets: u32,
    pub(crate) min_calls: u32,
    pub(crate) failure_ratio: f64,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) slow_call: Option<(Duration, f64)>,
    pub(crate) open_duration: Duration,
    pub(crate) max_open_duration: Duration,
    pub(crate) open_jitter: f64,
    pub(crate) half_open_probes: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) max_keys: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) key_display: KeyDisplay,
}

/// The shortest bucket of the rolling window.
pub(crate) const MIN_BUCKET: Duration = Duration::from_millis(10);
/// The most buckets a window may have.
pub(crate) const MAX_BUCKETS: u32 = 600;
/// The longest window, open duration or idle timeout (one year).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The most probes a half-open breaker admits at once (and the most
/// successes it may ask for).
pub(crate) const MAX_PROBES: u32 = 10_000;
/// The most keys a registry may hold.
pub(crate) const MAX_KEYS: usize = 1 << 24;

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            window: Duration::from_secs(30),
            buckets: 10,
            min_calls: 10,
            failure_ratio: 0.5,
            consecutive_failures: None,
            slow_call: None,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            open_jitter: 0.1,
            half_open_probes: 1,
            half_open_successes: 1,
            max_keys: 10_000,
            idle_timeout: Duration::from_secs(600),
            key_display: KeyDisplay::Hashed,
        }
    }
}

impl CircuitBreakerConfig {
    /// The default settings (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// The rolling window over which the failure and slow-call ratios are
    /// computed, and the number of time buckets it is divided into.
    ///
    /// Results expire one bucket at a time: a result counts for at least
    /// `window - window / buckets` and at most `window`. `buckets` is clamped
    /// to `1..=600`, the window to at most one year, and a bucket is at least
    /// 10 ms long (a shorter window gets fewer buckets).
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        let window = window.clamp(MIN_BUCKET, MAX_DURATION);
        let max_buckets = (window.as_nanos() / MIN_BUCKET.as_nanos()).max(1);
        let max_buckets = u32::try_from(max_buckets).unwrap_or(u32::MAX);
        self.window = window;
        self.buckets = buckets.clamp(1, MAX_BUCKETS).min(max_buckets);
        self
    }

    /// The number of calls the window must hold before a ratio may open the
    /// breaker (at least 1).
    pub fn min_calls(mut self, min_calls: u32) -> Self {
        self.min_calls = min_calls.max(1);
        self
    }

    /// The failure ratio (failures / calls in the window) at or above which
    /// the breaker opens, once [`min_calls`](Self::min_calls) is reached.
    ///
    /// Clamped to `0.0..=1.0`, where `0.0` opens on the first failure after
    /// the minimum calls; a NaN keeps the current value.
    pub fn failure_ratio(mut self, ratio: f64) -> Self {
        if !ratio.is_nan() {
            self.failure_ratio = ratio.clamp(0.0, 1.0);
        }
        self
    }

    /// Also open after `n` failures in a row, whatever the window holds
    /// (`None` turns it off; `Some(0)` is read as `Some(1)`).
    pub fn consecutive_failures(mut self, n: Option<u32>) -> Self {
        self.consecutive_failures = n.map(|n| n.max(1));
        self
    }

    /// Also open when the ratio of slow calls in the window reaches `ratio`,
    /// once [`min_calls`](Self::min_calls) is reached.
    ///
    /// A call is slow when its response headers (or its error) took longer
    /// than `threshold`. The time to the response headers is measured, not
    /// to the end of the body: a streamed answer that runs for minutes is
    /// not slow, an upstream that takes minutes to start answering is. A slow
    /// call may also be a failure; it counts in both ratios. A half-open
    /// probe that is slow counts as a failed probe. `ratio` is clamped to
    /// `0.0..=1.0` (NaN turns the trigger off).
    pub fn slow_calls(mut self, threshold: Duration, ratio: f64) -> Self {
        self.slow_call = if ratio.is_nan() {
            None
        } else {
            Some((threshold.min(MAX_DURATION), ratio.clamp(0.0, 1.0)))
        };
        self
    }

    /// Turns the slow-call trigger off.
    pub fn no_slow_calls(mut self) -> Self {
        self.slow_call = None;
        self
    }

    /// The open duration: how long the breaker stays open after its first
    /// trip (`base`), the longest it stays open after repeated trips
    /// (`max`), and the jitter.
    ///
    /// Each trip from half-open (a failed probe) doubles the open duration,
    /// up to `max`; closing resets it to `base`. The open duration is then
    /// spread by `±jitter` (a fraction, clamped to `0.0..=1.0`) and capped at
    /// `max`.
    /// Durations are clamped to 1 ms ..= one year, and `max` to at least
    /// `base`.
    pub fn open_duration(mut self, base: Duration, max: Duration, jitter: f64) -> Self {
        let base = base.clamp(Duration::from_millis(1), MAX_DURATION);
        self.open_duration = base;
        self.max_open_duration = max.clamp(base, MAX_DURATION);
        self.open_jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// How many probes a half-open breaker lets through at once, and how
    /// many of them must succeed to close it (both clamped to `1..=10_000`).
    ///
    /// Any failed probe opens the breaker again.
    pub fn half_open_probes(mut self, max_in_flight: u32, successes_to_close: u32) -> Self {
        self.half_open_probes = max_in_flight.clamp(1, MAX_PROBES);
        self.half_open_successes = successes_to_close.clamp(1, MAX_PROBES);
        self
    }

    /// The most keys (and so breakers) the layer keeps, clamped to
    /// `1..=16_777_216`.
    ///
    /// When a new key arrives and the registry is full, keys idle for longer
    /// than the [idle timeout](Self::idle_timeout) are dropped first, then
    /// the least recently used ones (closed breakers before open ones).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.clamp(1, MAX_KEYS);
        self
    }

    /// How long a key may go unused before its breaker is forgotten
    /// (clamped to 1 ms ..= one year). A breaker that is still open, or that
    /// has calls in flight, is kept.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle.clamp(Duration::from_millis(1), MAX_DURATION);
        self
    }

    /// How keys appear in `tracing` events (default: hashed, since a key
    /// may be an API key).
    pub fn key_display(mut self, display: KeyDisplay) -> Self {
        self.key_display = display;
        self
    }

    pub(crate) fn bucket_nanos(&self) -> u64 {
        saturating_nanos(self.window / self.buckets).max(saturating_nanos(MIN_BUCKET))
    }

    /// The open duration after `trips` trips in a row: doubled per trip,
    /// capped, jittered.
    pub(crate) fn open_duration_after(&self, trips: u32) -> Duration {
        let doubling = 2u32.saturating_pow(trips.saturating_sub(1).min(31));
        let d = self
            .open_duration
            .saturating_mul(doubling)
            .min(self.max_open_duration);
        let d = if self.open_jitter > 0.0 {
            d.mul_f64(1.0 + self.open_jitter * (2.0 * fastrand::f64() - 1.0))
        } else {
            d
        };
        d.clamp(Duration::from_millis(1), self.max_open_duration)
    }
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("window", &self.window)
            .field("buckets", &self.buckets)
            .field("min_calls", &self.min_calls)
            .field("failure_ratio", &self.failure_ratio)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("slow_call", &self.slow_call)
            .field("open_duration", &self.open_duration)
            .field("max_open_duration", &self.max_open_duration)
            .field("open_jitter", &self.open_jitter)
            .field("half_open_probes", &self.half_open_probes)
            .field("half_open_successes", &self.half_open_successes)
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .field("key_display", &self.key_display)
            .finish()
    }
}

/// How a breaker's key is written in `tracing` events.
///
/// Keys can be secrets (a breaker per API key), so the default is
/// [`Hashed`](KeyDisplay::Hashed). Keys that are safe to log (model names,
/// hosts) can be shown with [`Plain`](KeyDisplay::Plain). The
/// [`CircuitBreakerHandle`](super::CircuitBreakerHandle) and transition
/// callbacks always see the real key: they are program APIs, not logs.
///
/// ```
/// use tower_http_resilience::circuit_breaker::{CircuitBreakerConfig, KeyDisplay};
///
/// // Keys are model names: safe to show.
/// let config = CircuitBreakerConfig::new().key_display(KeyDisplay::Plain);
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyDisplay {
    /// The key as it is (cut to 64 bytes).
    Plain,
    /// `key#` and 8 hex digits of a fixed hash of the key: stable across
    /// runs, so events about one key can be correlated, but not readable.
    #[default]
    Hashed,
    /// `[redacted]`.
    Redacted,
}

/// A key as `tracing` events show it.
pub(crate) struct DisplayKey<'a>(pub(crate) &'a str, pub(crate) KeyDisplay);

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            KeyDisplay::Plain => f.write_str(truncate(self.0, 64)),
            KeyDisplay::Hashed => write!(f, "key#{:08x}", fnv1a(self.0.as_bytes())),
            KeyDisplay::Redacted => f.write_str("[redacted]"),
        }
    }
}

impl fmt::Debug for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_values_are_clamped() {
        let c = CircuitBreakerConfig::new()
            .window(Duration::ZERO, 0)
            .min_calls(0)
            .failure_ratio(7.0)
            .consecutive_failures(Some(0))
            .open_duration(Duration::ZERO, Duration::ZERO, f64::NAN)
            .half_open_probes(0, u32::MAX)
            .max_keys(0)
            .idle_timeout(Duration::MAX);
        assert_eq!(c.window, MIN_BUCKET);
        assert_eq!(c.buckets, 1);
        assert_eq!(c.min_calls, 1);
        assert_eq!(c.failure_ratio, 1.0);
        assert_eq!(c.consecutive_failures, Some(1));
        assert_eq!(c.open_duration, Duration::from_millis(1));
        assert_eq!(c.max_open_duration, Duration::from_millis(1));
        assert_eq!(c.open_jitter, 0.0);
        assert_eq!((c.half_open_probes, c.half_open_successes), (1, MAX_PROBES));
        assert_eq!(c.max_keys, 1);
        assert_eq!(c.idle_timeout, MAX_DURATION);
        assert_eq!(c.bucket_nanos(), 10_000_000);

        let c = CircuitBreakerConfig::new().window(Duration::from_millis(50), 100);
        assert_eq!(c.buckets, 5);
        let c = CircuitBreakerConfig::new().window(Duration::MAX, u32::MAX);
        assert_eq!((c.window, c.buckets), (MAX_DURATION, MAX_BUCKETS));
        let c = CircuitBreakerConfig::new().failure_ratio(f64::NAN);
        assert_eq!(c.failure_ratio, 0.5);
        let c = CircuitBreakerConfig::new().slow_calls(Duration::from_secs(1), f64::NAN);
        assert_eq!(c.slow_call, None);
    }

    #[test]
    fn defaults_match_the_table() {
        let c = CircuitBreakerConfig::default();
        assert_eq!(c.bucket_nanos(), 3_000_000_000);
        assert_eq!(c.min_calls, 10);
        assert_eq!(c.failure_ratio, 0.5);
        assert_eq!(c.key_display, KeyDisplay::Hashed);
    }

    #[test]
    fn open_duration_doubles_up_to_the_cap() {
        let c = CircuitBreakerConfig::new().open_duration(
            Duration::from_secs(10),
            Duration::from_secs(60),
            0.0,
        );
        let times: Vec<u64> = (1..=6)
            .map(|t| c.open_duration_after(t).as_secs())
            .collect();
        assert_eq!(times, [10, 20, 40, 60, 60, 60]);
        assert_eq!(c.open_duration_after(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn jitter_stays_in_its_band_and_under_the_cap() {
        let c = CircuitBreakerConfig::new().open_duration(
            Duration::from_secs(10),
            Duration::from_secs(15),
            0.2,
        );
        for _ in 0..1000 {
            let d = c.open_duration_after(1);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
            let d = c.open_duration_after(5);
            assert!(
                d >= Duration::from_secs(12) && d <= Duration::from_secs(15),
                "{d:?}"
            );
        }
    }

    #[test]
    fn hashed_keys_are_stable_and_unreadable() {
        let shown = DisplayKey("sk-secret", KeyDisplay::Hashed).to_string();
        assert_eq!(shown, format!("key#{:08x}", fnv1a(b"sk-secret")));
        assert!(!shown.contains("secret"));
        assert_eq!(
            DisplayKey("x", KeyDisplay::Redacted).to_string(),
            "[redacted]"
        );
        let long = "é".repeat(100);
        assert!(DisplayKey(&long, KeyDisplay::Plain).to_string().len() <= 64);
    }
}
