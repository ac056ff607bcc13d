//! The settings of a pacing layer.

use std::time::Duration;

/// The longest wait a call held back by pacing makes, unless
/// [`max_retry_after`](PacingConfig::max_retry_after) says otherwise: the
/// same as the retry layer's.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tower_http_resilience::pacing::DEFAULT_MAX_RETRY_AFTER, Duration::from_secs(60));
/// ```
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The longest hold learnt from one response (five minutes): a longer hint
/// is cut to it.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tower_http_resilience::pacing::MAX_HOLD, Duration::from_secs(300));
/// ```
pub const MAX_HOLD: Duration = Duration::from_secs(5 * 60);

/// The most keys a layer may keep.
pub(crate) const MAX_KEYS: usize = 1 << 24;

/// The longest release window.
const MAX_RELEASE_WINDOW: Duration = Duration::from_secs(10);

/// The settings of a [`PacingLayer`](super::PacingLayer).
///
/// | setting | default | what it does |
/// |---|---|---|
/// | [`rpm`](PacingConfig::rpm) | none | the most requests per minute sent per key (a request's [`Rpm`](super::Rpm) extension overrides it) |
/// | [`max_retry_after`](PacingConfig::max_retry_after) | 60 s | the longest a held call waits; a longer wait is refused at once |
/// | [`release_window`](PacingConfig::release_window) | 250 ms | waiting calls are released spread over this window after the hold ends |
/// | [`max_keys`](PacingConfig::max_keys) | 10 000 | the most keys kept |
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::pacing::{PacingConfig, PacingLayer};
///
/// let layer = PacingLayer::with_config(
///     PacingConfig::new()
///         .rpm(500)
///         .max_retry_after(Duration::from_secs(20))
///         .release_window(Duration::from_millis(100))
///         .max_keys(1_000),
/// );
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct PacingConfig {
    pub(crate) rpm: Option<u32>,
    pub(crate) max_retry_after: Duration,
    pub(crate) release_window: Duration,
    pub(crate) max_keys: usize,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            rpm: None,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            release_window: Duration::from_millis(250),
            max_keys: 10_000,
        }
    }
}

impl PacingConfig {
    /// The default settings (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// The most requests per minute sent for each key (`0`: no rate, the
    /// default). Calls over the rate wait for their turn, or are refused
    /// when the turn comes too late for them.
    ///
    /// The rate allows a small burst: up to one second's share of the rate
    /// (`rpm / 60`, at least 1, at most 10) goes out at once, and the
    /// calls after it are spaced so that no 60-second window ever holds
    /// more than `rpm` calls (the steady pace is `rpm - burst + 1` calls a
    /// minute: 493 for 500, 3 for 3).
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.rpm = (rpm > 0).then_some(rpm);
        self
    }

    /// The longest a held call waits for its key (60 s by default, as the
    /// retry layer's `max_retry_after`). A call whose wait would be longer,
    /// or would cross the call's deadline, is answered at once with 429
    /// `rate_limit_exceeded` and `retry-after`, without being sent.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The window after the end of a hold over which the calls that waited
    /// for it are released, spread evenly (250 ms by default; at most
    /// 10 s): the upstream does not get them all at the instant it said it
    /// would take calls again. Zero releases them all at that instant.
    pub fn release_window(mut self, window: Duration) -> Self {
        self.release_window = window.min(MAX_RELEASE_WINDOW);
        self
    }

    /// The most keys the layer keeps (10 000 by default; at least 1, at
    /// most 2^24). When a new key arrives and the layer is full, keys that
    /// hold nothing are forgotten first, then the least recently used.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.clamp(1, MAX_KEYS);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_clamped() {
        let c = PacingConfig::new()
            .rpm(0)
            .max_keys(0)
            .release_window(Duration::MAX);
        assert_eq!(c.rpm, None);
        assert_eq!(c.max_keys, 1);
        assert_eq!(c.release_window, MAX_RELEASE_WINDOW);
        assert_eq!(PacingConfig::new().max_keys(usize::MAX).max_keys, MAX_KEYS);
    }

    #[cfg(feature = "retry")]
    #[test]
    fn waits_as_long_as_the_retry_layer() {
        assert_eq!(
            DEFAULT_MAX_RETRY_AFTER,
            crate::retry::DEFAULT_MAX_RETRY_AFTER
        );
    }
}
