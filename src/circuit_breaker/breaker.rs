//! One breaker: the state machine of one key.
//!
//! The state, the generation and the half-open probe counts share one
//! `AtomicU64` (the *word*), so that admitting a call in the closed state is
//! one atomic load, and admitting or finishing a probe is one
//! compare-and-swap. State changes (trip, half-open, close, forced) are rare;
//! they are serialized by a mutex and bump the generation, so that results of
//! calls admitted under an earlier state are ignored.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::config::CircuitBreakerConfig;
use super::handle::{BreakerSnapshot, CircuitState, Transition, TransitionReason};
use super::window::{Counts, Window};
use super::KeyDisplay;
use crate::deadline::CutSignal;

/// The `retry-after` of a call rejected because every half-open probe slot
/// is taken: the probes in flight decide within about that long.
pub(crate) const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest key kept as is; longer keys are kept as their first
/// `MAX_KEY_LEN` bytes and told apart by their hash and length.
pub(crate) const MAX_KEY_LEN: usize = 256;

pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// What every breaker of a layer shares: the settings, the clock origin and
/// the transition listeners.
pub(crate) struct Core {
    pub(crate) config: CircuitBreakerConfig,
    bucket_nanos: u64,
    base: Instant,
    pub(crate) listeners: RwLock<Vec<Listener>>,
}

impl Core {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Core {
            bucket_nanos: config.bucket_nanos(),
            config,
            base: Instant::now(),
            listeners: RwLock::new(Vec::new()),
        }
    }

    /// Nanoseconds from the layer's creation to `now`, on tokio's clock.
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.base);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        self.nanos(Instant::now())
    }

    fn epoch(&self, nanos: u64) -> u64 {
        nanos / self.bucket_nanos
    }

    /// The open time after `trips` trips in a row: doubled per trip, capped,
    /// jittered.
    pub(crate) fn open_for(&self, trips: u32) -> Duration {
        let c = &self.config;
        let doubling = 2u32.saturating_pow(trips.saturating_sub(1).min(31));
        let d = c
            .open_duration
            .saturating_mul(doubling)
            .min(c.max_open_duration);
        let d = if c.open_jitter > 0.0 {
            d.mul_f64(1.0 + c.open_jitter * (2.0 * fastrand::f64() - 1.0))
        } else {
            d
        };
        d.clamp(Duration::from_millis(1), c.max_open_duration)
    }

    fn listeners(&self) -> Vec<Listener> {
        self.listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// The word: bits 0-1 state, 2-17 probes in flight, 18-31 probe successes,
// 32-63 generation.
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const IN_FLIGHT_ONE: u64 = 1 << 2;
const SUCCESS_ONE: u64 = 1 << 18;

fn state_of(w: u64) -> u64 {
    w & 0b11
}
fn gen_of(w: u64) -> u32 {
    (w >> 32) as u32
}
fn in_flight_of(w: u64) -> u32 {
    ((w >> 2) & 0xffff) as u32
}
fn successes_of(w: u64) -> u32 {
    ((w >> 18) & 0x3fff) as u32
}
fn pack(gen: u32, state: u64) -> u64 {
    (u64::from(gen) << 32) | state
}
fn public_state(w: u64) -> CircuitState {
    match state_of(w) {
        CLOSED => CircuitState::Closed,
        OPEN => CircuitState::Open,
        _ => CircuitState::HalfOpen,
    }
}

/// What the breaker learned about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// Not counted (a body dropped early, or a classifier said so).
    Ignore,
}

/// The admission of one call: the generation it was admitted under and
/// whether it holds a half-open probe slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    gen: u32,
    probe: bool,
}

/// The breaker of one key.
pub(crate) struct Breaker {
    core: Arc<Core>,
    /// The key (its first [`MAX_KEY_LEN`] bytes).
    key: Arc<str>,
    key_len: usize,
    hash: u64,
    word: AtomicU64,
    /// When an open breaker may let a probe through (nanos since `base`).
    open_until: AtomicU64,
    /// Trips since the breaker was last closed.
    trips: AtomicU32,
    consecutive: AtomicU32,
    window: Window,
    /// One more than the last epoch that saw a failure or a slow call; zero
    /// when the window has seen none.
    last_bad_epoch: AtomicU64,
    /// Last use, milliseconds since `base`.
    last_used: AtomicU64,
    /// Order of creation in its registry: breaks ties between equal
    /// `last_used` times, oldest first.
    seq: u64,
    transition: Mutex<()>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("key", &DisplayKey(&self.key, self.core.config.key_display))
            .field("state", &public_state(self.word.load(Ordering::Relaxed)))
            .finish_non_exhaustive()
    }
}

impl Breaker {
    pub(crate) fn new(core: Arc<Core>, key: &str, hash: u64, now: u64, seq: u64) -> Self {
        let mut end = key.len().min(MAX_KEY_LEN);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        Breaker {
            window: Window::new(core.config.buckets),
            core,
            key: Arc::from(&key[..end]),
            key_len: key.len(),
            hash,
            word: AtomicU64::new(pack(0, CLOSED)),
            open_until: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            last_bad_epoch: AtomicU64::new(0),
            last_used: AtomicU64::new(now / 1_000_000),
            seq,
            transition: Mutex::new(()),
        }
    }

    /// Whether this is the breaker of `key` (whose hash is `hash`).
    pub(crate) fn is_key(&self, key: &str, hash: u64) -> bool {
        self.hash == hash && self.key_len == key.len() && same_prefix(key, &self.key)
    }

    /// Whether this is the breaker of `key`, without hashing it: true only
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

    pub(crate) fn config(&self) -> &CircuitBreakerConfig {
        &self.core.config
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> CircuitState {
        public_state(self.word.load(Ordering::Acquire))
    }

    /// Whether the breaker is open and stays so after `now`.
    pub(crate) fn is_open_after(&self, now: u64) -> bool {
        state_of(self.word.load(Ordering::Acquire)) == OPEN
            && self.open_until.load(Ordering::Acquire) > now
    }

    fn touch(&self, now: u64) {
        let ms = now / 1_000_000;
        if self.last_used.load(Ordering::Relaxed) != ms {
            self.last_used.store(ms, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.transition.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a call, or says how long the breaker stays closed to calls.
    pub(crate) fn admit(&self) -> Result<Ticket, Duration> {
        loop {
            let w = self.word.load(Ordering::Acquire);
            match state_of(w) {
                CLOSED => {
                    return Ok(Ticket {
                        gen: gen_of(w),
                        probe: false,
                    })
                }
                OPEN => {
                    let now = self.core.now_nanos();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        self.touch(now);
                        return Err(Duration::from_nanos(until - now));
                    }
                    self.to_half_open(w, now);
                }
                _ => {
                    if in_flight_of(w) >= self.core.config.half_open_probes {
                        self.touch(self.core.now_nanos());
                        return Err(HALF_OPEN_RETRY_AFTER);
                    }
                    if self
                        .word
                        .compare_exchange_weak(
                            w,
                            w + IN_FLIGHT_ONE,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        return Ok(Ticket {
                            gen: gen_of(w),
                            probe: true,
                        });
                    }
                }
            }
        }
    }

    /// Records the outcome of a call admitted with `ticket`.
    pub(crate) fn record(&self, ticket: Ticket, outcome: Outcome, slow: bool) {
        if ticket.probe {
            self.record_probe(ticket, outcome, slow);
            return;
        }
        if outcome == Outcome::Ignore {
            return;
        }
        let w = self.word.load(Ordering::Acquire);
        if state_of(w) != CLOSED || gen_of(w) != ticket.gen {
            // Admitted before the breaker last changed state: stale.
            return;
        }
        let now = self.core.now_nanos();
        self.touch(now);
        let epoch = self.core.epoch(now);
        let failure = outcome == Outcome::Failure;
        self.window.record(epoch, failure, slow);
        let consecutive = if failure {
            self.consecutive
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1)
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Release);
            }
            0
        };
        // A success can only complete a trip when the window holds failures
        // or slow calls (with fewer calls than `min_calls` before it, say);
        // a healthy key never pays for reading the window.
        let check = if failure || slow {
            if self.last_bad_epoch.load(Ordering::Relaxed) < epoch + 1 {
                self.last_bad_epoch.fetch_max(epoch + 1, Ordering::AcqRel);
            }
            true
        } else {
            let last_bad = self.last_bad_epoch.load(Ordering::Acquire);
            last_bad != 0
                && (epoch + 1).saturating_sub(last_bad) < u64::from(self.core.config.buckets)
        };
        if check {
            if let Some(reason) = self.should_trip(epoch, consecutive) {
                self.trip(ticket.gen, CLOSED, reason, now);
            }
        }
    }

    fn record_probe(&self, ticket: Ticket, outcome: Outcome, slow: bool) {
        let slow_fails = slow && self.core.config.slow_call.is_some();
        loop {
            let w = self.word.load(Ordering::Acquire);
            if state_of(w) != HALF_OPEN || gen_of(w) != ticket.gen {
                return;
            }
            let next = match outcome {
                Outcome::Failure => {
                    let now = self.core.now_nanos();
                    self.touch(now);
                    self.trip(ticket.gen, HALF_OPEN, TransitionReason::ProbeFailed, now);
                    return;
                }
                Outcome::Success if slow_fails => {
                    let now = self.core.now_nanos();
                    self.touch(now);
                    self.trip(ticket.gen, HALF_OPEN, TransitionReason::ProbeSlow, now);
                    return;
                }
                Outcome::Success => w - IN_FLIGHT_ONE + SUCCESS_ONE,
                Outcome::Ignore => w - IN_FLIGHT_ONE,
            };
            if self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if outcome == Outcome::Success {
                    let now = self.core.now_nanos();
                    self.touch(now);
                    if successes_of(next) >= self.core.config.half_open_successes {
                        self.close(ticket.gen, now);
                    }
                }
                return;
            }
        }
    }

    fn should_trip(&self, epoch: u64, consecutive: u32) -> Option<TransitionReason> {
        let c = &self.core.config;
        if c.consecutive_failures.is_some_and(|n| consecutive >= n) {
            return Some(TransitionReason::ConsecutiveFailures);
        }
        let counts = self.window.counts(epoch);
        if counts.calls < u64::from(c.min_calls) {
            return None;
        }
        let calls = counts.calls as f64;
        if counts.failures > 0 && counts.failures as f64 / calls >= c.failure_ratio {
            return Some(TransitionReason::FailureRatio);
        }
        if let Some((_, ratio)) = c.slow_call {
            if counts.slow > 0 && counts.slow as f64 / calls >= ratio {
                return Some(TransitionReason::SlowCallRatio);
            }
        }
        None
    }

    /// Opens the breaker if it is still in `state` of generation `gen`.
    fn trip(&self, gen: u32, state: u64, reason: TransitionReason, now: u64) {
        let guard = self.lock();
        let w = self.word.load(Ordering::Acquire);
        if gen_of(w) != gen || state_of(w) != state {
            return;
        }
        let trips = if state == CLOSED {
            1
        } else {
            self.trips.load(Ordering::Relaxed).saturating_add(1)
        };
        self.trips.store(trips, Ordering::Relaxed);
        let open_for = self.core.open_for(trips);
        let counts = self.window.counts(self.core.epoch(now));
        self.open_at(now, open_for);
        self.word
            .store(pack(gen.wrapping_add(1), OPEN), Ordering::Release);
        drop(guard);
        self.emit(
            public_state(w),
            CircuitState::Open,
            reason,
            Some(open_for),
            counts,
        );
    }

    fn open_at(&self, now: u64, open_for: Duration) {
        let nanos = u64::try_from(open_for.as_nanos()).unwrap_or(u64::MAX);
        self.open_until
            .store(now.saturating_add(nanos), Ordering::Release);
        self.window.reset();
        self.consecutive.store(0, Ordering::Release);
        self.last_bad_epoch.store(0, Ordering::Release);
    }

    /// Lets probes through once the open time has passed.
    fn to_half_open(&self, seen: u64, now: u64) {
        let guard = self.lock();
        let w = self.word.load(Ordering::Acquire);
        if w != seen || now < self.open_until.load(Ordering::Acquire) {
            return;
        }
        self.word.store(
            pack(gen_of(w).wrapping_add(1), HALF_OPEN),
            Ordering::Release,
        );
        drop(guard);
        self.emit(
            CircuitState::Open,
            CircuitState::HalfOpen,
            TransitionReason::OpenElapsed,
            None,
            Counts::default(),
        );
    }

    /// Closes a half-open breaker of generation `gen`.
    fn close(&self, gen: u32, _now: u64) {
        let guard = self.lock();
        let w = self.word.load(Ordering::Acquire);
        if gen_of(w) != gen || state_of(w) != HALF_OPEN {
            return;
        }
        self.reset_counts();
        self.word
            .store(pack(gen.wrapping_add(1), CLOSED), Ordering::Release);
        drop(guard);
        self.emit(
            CircuitState::HalfOpen,
            CircuitState::Closed,
            TransitionReason::ProbesSucceeded,
            None,
            Counts::default(),
        );
    }

    fn reset_counts(&self) {
        self.window.reset();
        self.consecutive.store(0, Ordering::Release);
        self.last_bad_epoch.store(0, Ordering::Release);
        self.trips.store(0, Ordering::Relaxed);
    }

    /// Opens the breaker for `open_for`, whatever its state.
    pub(crate) fn force_open(&self, open_for: Duration) {
        let now = self.core.now_nanos();
        self.touch(now);
        let guard = self.lock();
        let w = self.word.load(Ordering::Acquire);
        self.open_at(now, open_for);
        self.word
            .store(pack(gen_of(w).wrapping_add(1), OPEN), Ordering::Release);
        drop(guard);
        self.emit(
            public_state(w),
            CircuitState::Open,
            TransitionReason::Forced,
            Some(open_for),
            Counts::default(),
        );
    }

    /// Closes the breaker and forgets its counts, whatever its state.
    pub(crate) fn force_closed(&self, reason: TransitionReason) {
        let guard = self.lock();
        let w = self.word.load(Ordering::Acquire);
        self.reset_counts();
        self.word
            .store(pack(gen_of(w).wrapping_add(1), CLOSED), Ordering::Release);
        drop(guard);
        if state_of(w) != CLOSED {
            self.emit(
                public_state(w),
                CircuitState::Closed,
                reason,
                None,
                Counts::default(),
            );
        }
    }

    /// The breaker's state and counts now. An open breaker whose time is up
    /// turns half-open first.
    pub(crate) fn snapshot(&self) -> BreakerSnapshot {
        let now = self.core.now_nanos();
        let w = self.word.load(Ordering::Acquire);
        if state_of(w) == OPEN && now >= self.open_until.load(Ordering::Acquire) {
            self.to_half_open(w, now);
        }
        let w = self.word.load(Ordering::Acquire);
        let counts = self.window.counts(self.core.epoch(now));
        let open_remaining = (state_of(w) == OPEN).then(|| {
            Duration::from_nanos(self.open_until.load(Ordering::Acquire).saturating_sub(now))
        });
        BreakerSnapshot {
            key: self.key.clone(),
            state: public_state(w),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            open_remaining,
            trips: self.trips.load(Ordering::Relaxed),
            probes_in_flight: if state_of(w) == HALF_OPEN {
                in_flight_of(w)
            } else {
                0
            },
        }
    }

    fn emit(
        &self,
        from: CircuitState,
        to: CircuitState,
        reason: TransitionReason,
        open_for: Option<Duration>,
        counts: Counts,
    ) {
        let key = DisplayKey(&self.key, self.core.config.key_display);
        let open_for_ms = open_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if to == CircuitState::Open {
            tracing::warn!(
                target: "tower_http_resilience::circuit_breaker",
                key = %key,
                from = %from,
                to = %to,
                reason = %reason,
                open_for_ms,
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
        let listeners = self.core.listeners();
        if listeners.is_empty() {
            return;
        }
        let transition = Transition {
            key: self.key.clone(),
            from,
            to,
            reason,
            open_for,
        };
        for listener in listeners {
            listener(&transition);
        }
    }
}

/// Whether `key` starts with `prefix`. Keys are short: a byte loop beats a
/// call to `memcmp`.
#[inline]
fn same_prefix(key: &str, prefix: &str) -> bool {
    let (key, prefix) = (key.as_bytes(), prefix.as_bytes());
    key.len() >= prefix.len() && key.iter().zip(prefix).all(|(a, b)| a == b)
}

/// A key as `tracing` events show it.
pub(crate) struct DisplayKey<'a>(pub(crate) &'a str, pub(crate) KeyDisplay);

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            KeyDisplay::Plain => {
                let mut end = self.0.len().min(64);
                while !self.0.is_char_boundary(end) {
                    end -= 1;
                }
                f.write_str(&self.0[..end])
            }
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

/// 32-bit FNV-1a: a fixed hash, the same in every run.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A call's hold on its breaker: records the outcome once, or releases a
/// half-open probe slot when dropped unrecorded.
pub(crate) struct Guard {
    breaker: Arc<Breaker>,
    ticket: Ticket,
    start: Option<Instant>,
    slow: bool,
    done: bool,
    /// Set by an outer timeout that cut the call short: dropped unfinished,
    /// the call then failed rather than being abandoned by its caller.
    cut: Option<CutSignal>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("probe", &self.ticket.probe)
            .field("slow", &self.slow)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub(crate) fn new(breaker: Arc<Breaker>, ticket: Ticket, cut: Option<CutSignal>) -> Self {
        // The clock is read only when slow calls are watched.
        let start = breaker.core.config.slow_call.map(|_| Instant::now());
        Guard {
            breaker,
            ticket,
            start,
            slow: false,
            done: false,
            cut,
        }
    }

    /// Marks the arrival of the response headers (or an error): decides
    /// whether the call was slow.
    pub(crate) fn headers_arrived(&mut self) {
        if let (Some(start), Some((threshold, _))) = (self.start, self.breaker.config().slow_call) {
            self.slow = start.elapsed() > threshold;
        }
    }

    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.record(self.ticket, outcome, self.slow);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.cut.as_ref().is_some_and(CutSignal::is_set) {
            // A timeout outside ended the call (a stalled stream, a hung
            // attempt): the upstream failed it.
            self.breaker
                .record(self.ticket, Outcome::Failure, self.slow);
        } else if self.ticket.probe {
            // The caller went away: not counted, the probe slot is freed.
            self.breaker.record(self.ticket, Outcome::Ignore, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(config: CircuitBreakerConfig) -> Breaker {
        Breaker::new(Arc::new(Core::new(config)), "k", 1, 0, 0)
    }

    #[test]
    fn word_packing() {
        let w = pack(7, HALF_OPEN) + 3 * IN_FLIGHT_ONE + 5 * SUCCESS_ONE;
        assert_eq!(
            (state_of(w), gen_of(w), in_flight_of(w), successes_of(w)),
            (HALF_OPEN, 7, 3, 5)
        );
        // The largest counts fit in their fields.
        let w = pack(u32::MAX, HALF_OPEN)
            + u64::from(super::super::config::MAX_PROBES) * IN_FLIGHT_ONE
            + u64::from(super::super::config::MAX_PROBES) * SUCCESS_ONE;
        assert_eq!(in_flight_of(w), super::super::config::MAX_PROBES);
        assert_eq!(successes_of(w), super::super::config::MAX_PROBES);
        assert_eq!(gen_of(w), u32::MAX);
    }

    #[test]
    fn open_time_doubles_up_to_the_cap() {
        let core = Core::new(CircuitBreakerConfig::new().open_duration(
            Duration::from_secs(10),
            Duration::from_secs(60),
            0.0,
        ));
        let times: Vec<u64> = (1..=6).map(|t| core.open_for(t).as_secs()).collect();
        assert_eq!(times, [10, 20, 40, 60, 60, 60]);
        assert_eq!(core.open_for(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn jitter_stays_in_its_band_and_under_the_cap() {
        let core = Core::new(CircuitBreakerConfig::new().open_duration(
            Duration::from_secs(10),
            Duration::from_secs(15),
            0.2,
        ));
        for _ in 0..1000 {
            let d = core.open_for(1);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
            let d = core.open_for(5);
            assert!(
                d >= Duration::from_secs(12) && d <= Duration::from_secs(15),
                "{d:?}"
            );
        }
    }

    #[test]
    fn stale_results_are_ignored() {
        let b = breaker(CircuitBreakerConfig::new().min_calls(1).failure_ratio(0.5));
        let old = b.admit().unwrap();
        b.force_open(Duration::from_secs(1));
        b.force_closed(TransitionReason::Forced);
        b.record(old, Outcome::Failure, false);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.snapshot().calls, 0);
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
