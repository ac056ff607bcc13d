//! A registry entry: one key's identity, its eviction bookkeeping and its
//! breaker, and the reporting of the breaker's transitions.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::breaker::{Admission, Breaker, Change, Seen, Target};
use super::classify::Verdict;
use super::config::DisplayKey;
use super::core::Core;
use super::state::{BreakerSnapshot, CircuitState, Transition, TransitionReason};
use super::ticket::Ticket;
use crate::call::Settle;
use crate::metrics::BreakerSeries;
use crate::util::{saturating_millis, truncate};

/// The longest key kept as is; longer keys are kept as their first
/// `MAX_KEY_LEN` bytes and told apart by their hash and length.
pub(crate) const MAX_KEY_LEN: usize = 256;

/// One key of a registry and its breaker.
pub(crate) struct Entry {
    core: Arc<Core>,
    /// The key (its first [`MAX_KEY_LEN`] bytes).
    key: Arc<str>,
    key_len: usize,
    hash: u64,
    /// Last use, milliseconds since the layer was made.
    last_used: AtomicU64,
    /// Order of creation in its registry: breaks ties between equal
    /// `last_used` times, oldest first.
    seq: u64,
    breaker: Breaker,
    /// The breaker's state and transitions, as metrics.
    series: BreakerSeries,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &DisplayKey(&self.key, self.core.config.key_display))
            .field("state", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl Entry {
    pub(crate) fn new(core: Arc<Core>, key: &str, hash: u64, now: u64, seq: u64) -> Self {
        Entry {
            breaker: Breaker::new(core.config.buckets),
            core,
            key: Arc::from(truncate(key, MAX_KEY_LEN)),
            key_len: key.len(),
            hash,
            last_used: AtomicU64::new(now / 1_000_000),
            seq,
            series: BreakerSeries::new(),
        }
    }

    /// Whether this is the entry of `key` (whose hash is `hash`).
    pub(crate) fn is_key(&self, key: &str, hash: u64) -> bool {
        self.hash == hash && self.key_len == key.len() && same_prefix(key, &self.key)
    }

    /// Whether this is the entry of `key`, without hashing it: true only
    /// for keys short enough to be kept whole.
    pub(crate) fn is_exact_key(&self, key: &str) -> bool {
        self.key_len == key.len() && key.len() == self.key.len() && same_prefix(key, &self.key)
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    #[cfg(test)]
    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    fn touch(&self, now: u64) {
        let ms = now / 1_000_000;
        if self.last_used.load(Ordering::Relaxed) != ms {
            self.last_used.store(ms, Ordering::Relaxed);
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Whether the breaker is open and stays so after `now`.
    pub(crate) fn is_open_after(&self, now: u64) -> bool {
        self.breaker.is_open_after(now)
    }

    /// The slow-call threshold, when slow calls are watched.
    pub(crate) fn slow_threshold(&self) -> Option<Duration> {
        self.core.config.slow_call.map(|(threshold, _)| threshold)
    }

    /// Admits a call, or says how long the breaker stays closed to calls.
    pub(crate) fn admit(&self) -> Result<Ticket, Duration> {
        loop {
            match self.breaker.admit(&self.core) {
                Admission::Admitted(ticket) => return Ok(ticket),
                Admission::Rejected(retry_after) => {
                    self.touch(self.core.now_nanos());
                    return Err(retry_after);
                }
                Admission::Due(seen, now) => self.to_half_open(seen, now),
            }
        }
    }

    /// Records the outcome of a call admitted with `ticket`.
    pub(crate) fn record(&self, ticket: Ticket, verdict: Verdict, slow: bool) {
        let now = self.core.now_nanos();
        self.touch(now);
        let change = self.breaker.record(&self.core, ticket, verdict, slow, now);
        self.report(change);
    }

    /// Opens the breaker for `duration`, whatever its state.
    pub(crate) fn force_open(&self, duration: Duration) {
        let now = self.core.now_nanos();
        self.touch(now);
        let to = Target::Open(duration);
        let change = self
            .breaker
            .transition(&self.core, None, to, TransitionReason::Forced, now);
        self.report(change);
    }

    /// Closes the breaker and forgets its counts, whatever its state.
    pub(crate) fn force_closed(&self, reason: TransitionReason) {
        let now = self.core.now_nanos();
        let change = self
            .breaker
            .transition(&self.core, None, Target::Closed, reason, now);
        self.report(change);
    }

    /// The breaker's state and counts now. An open breaker whose open
    /// duration is up turns half-open first.
    pub(crate) fn snapshot(&self) -> BreakerSnapshot {
        let now = self.core.now_nanos();
        if let Some(seen) = self.breaker.due(now) {
            self.to_half_open(seen, now);
        }
        self.breaker.snapshot(&self.core, self.key.clone(), now)
    }

    fn to_half_open(&self, seen: Seen, now: u64) {
        let reason = TransitionReason::OpenElapsed;
        let change = self
            .breaker
            .transition(&self.core, Some(seen), Target::HalfOpen, reason, now);
        self.report(change);
    }

    /// Writes a transition as a `tracing` event and hands it to the
    /// callbacks, outside any lock.
    fn report(&self, change: Option<Change>) {
        let Some(change) = change else { return };
        let Change {
            from,
            to,
            reason,
            open_duration,
            counts,
        } = change;
        let key = DisplayKey(&self.key, self.core.config.key_display);
        if to == CircuitState::Open {
            tracing::warn!(
                target: "tower_http_resilience::circuit_breaker",
                key = %key,
                from = %from,
                to = %to,
                reason = %reason,
                open_duration_ms = open_duration.map(saturating_millis),
                calls = counts.calls,
                failures = counts.failures,
                slow_calls = counts.slow,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                target: "tower_http_resilience::circuit_breaker",
                key = %key,
                from = %from,
                to = %to,
                reason = %reason,
                "circuit breaker is {}",
                to
            );
        }
        self.series
            .transition(to, || self.label(), || self.breaker.state());
        let listeners = self.core.listeners();
        if listeners.is_empty() {
            return;
        }
        let transition = Transition {
            key: self.key.clone(),
            from,
            to,
            reason,
            open_duration,
        };
        for listener in listeners {
            listener(&transition);
        }
    }
}

impl Entry {
    /// The registry forgot the key: its state gauge goes to 0.
    pub(crate) fn forget(&self) {
        self.series.forget();
    }

    /// The key as its metrics show it: as the layer shows keys in events
    /// (`None`: not shown), whole when it is shown plain.
    #[cfg(feature = "metrics")]
    fn label(&self) -> Option<::metrics::SharedString> {
        use super::config::KeyDisplay;
        match self.core.config.key_display {
            KeyDisplay::Plain => Some(::metrics::SharedString::from_shared(self.key.clone())),
            KeyDisplay::Hashed => {
                let shown = DisplayKey(&self.key, KeyDisplay::Hashed).to_string();
                Some(shown.into())
            }
            KeyDisplay::Redacted => None,
        }
    }

    #[cfg(not(feature = "metrics"))]
    fn label(&self) -> Option<std::convert::Infallible> {
        None
    }
}

/// An attempt's outcome left pending in its call's context is recorded
/// here when the call ends.
impl Settle for Entry {
    fn settle(&self, outcome: u64) {
        let (ticket, verdict, slow) = Ticket::unpack(outcome);
        self.record(ticket, verdict, slow);
    }

    fn layer(&self) -> usize {
        Arc::as_ptr(&self.core) as usize
    }
}

/// Whether `key` starts with `prefix`. Keys are short: a byte loop beats a
/// call to `memcmp`.
#[inline]
fn same_prefix(key: &str, prefix: &str) -> bool {
    let (key, prefix) = (key.as_bytes(), prefix.as_bytes());
    key.len() >= prefix.len() && key.iter().zip(prefix).all(|(a, b)| a == b)
}
