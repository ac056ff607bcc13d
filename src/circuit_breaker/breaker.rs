//! One breaker: the state machine of one key.
//!
//! The state, the generation and the half-open probe counts share one
//! `AtomicU64` (the *word*), so that admitting a call in the closed state is
//! one atomic load, and admitting or finishing a probe is one
//! compare-and-swap. State changes are rare; they go through one
//! [`transition`](Breaker::transition), serialized by a mutex, and bump the
//! generation, so that outcomes of calls admitted under an earlier state are
//! ignored.
//!
//! A call is first admitted ([`admit`](Breaker::admit) hands out a
//! [`Ticket`]), then its outcome is recorded once with that ticket
//! ([`record`](Breaker::record)). The breaker neither logs nor knows its key:
//! the methods that may change its state return the [`Change`], and the
//! registry entry that owns the breaker reports it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::classify::Verdict;
use super::core::Core;
use super::state::{BreakerSnapshot, CircuitState, TransitionReason};
use super::ticket::Ticket;
use super::window::{Counts, Window};
use crate::util::saturating_nanos;

/// The `retry-after` of a call rejected because every half-open probe slot
/// is taken: the probes in flight decide within about that long.
pub(crate) const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

// The word: bits 0-1 state, 2-17 probes in flight, 18-31 probe successes,
// 32-63 generation. In the closed and open states only the state and the
// generation are ever set.
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

/// The state a transition expects to find when it acts for a call admitted
/// with `ticket`.
fn seen(ticket: Ticket) -> Seen {
    Seen {
        gen: ticket.gen,
        state: if ticket.probe { HALF_OPEN } else { CLOSED },
    }
}

/// The state a transition expects to find: the generation and state its
/// caller saw. A transition whose breaker moved on since does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    gen: u32,
    state: u64,
}

impl Seen {
    fn of(w: u64) -> Self {
        Seen {
            gen: gen_of(w),
            state: state_of(w),
        }
    }
}

/// Where a transition goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Open after a trip, for an open duration that doubles with each trip
    /// in a row.
    Tripped,
    /// Open for this long, whatever the trips so far.
    Open(Duration),
    /// Let probes through, if the open duration is up.
    HalfOpen,
    /// Close, and forget the counts and the trips.
    Closed,
}

/// A state change, to be reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) from: CircuitState,
    pub(crate) to: CircuitState,
    pub(crate) reason: TransitionReason,
    pub(crate) open_duration: Option<Duration>,
    /// The window's counts when a trip opened it.
    pub(crate) counts: Counts,
}

/// What [`Breaker::admit`] decided.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Admission {
    Admitted(Ticket),
    /// Closed to calls for about this long.
    Rejected(Duration),
    /// Open, and its open duration is up (at `now`): it turns half-open
    /// first.
    Due(Seen, u64),
}

/// The state machine of one key.
#[derive(Debug)]
pub(crate) struct Breaker {
    word: AtomicU64,
    /// When an open breaker may let a probe through.
    open_until: AtomicU64,
    /// Trips since the breaker was last closed.
    trips: AtomicU32,
    consecutive: AtomicU32,
    window: Window,
    /// One more than the last epoch that saw a failure or a slow call; zero
    /// when the window has seen none.
    last_bad_epoch: AtomicU64,
    /// Held by a transition, so that transitions happen one at a time.
    serial: Mutex<()>,
}

impl Breaker {
    pub(crate) fn new(buckets: u32) -> Self {
        Breaker {
            word: AtomicU64::new(pack(0, CLOSED)),
            open_until: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            window: Window::new(buckets),
            last_bad_epoch: AtomicU64::new(0),
            serial: Mutex::new(()),
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        public_state(self.word.load(Ordering::Acquire))
    }

    /// Whether the breaker is open and stays so after `now`.
    pub(crate) fn is_open_after(&self, now: u64) -> bool {
        state_of(self.word.load(Ordering::Acquire)) == OPEN
            && self.open_until.load(Ordering::Acquire) > now
    }

    /// When the breaker's last open ended or ends (nanoseconds), unless it
    /// is closed (0).
    pub(crate) fn open_until(&self) -> u64 {
        match state_of(self.word.load(Ordering::Acquire)) {
            CLOSED => 0,
            _ => self.open_until.load(Ordering::Acquire),
        }
    }

    /// The state to turn half-open from, if the breaker is open and its open
    /// duration is up at `now`.
    pub(crate) fn due(&self, now: u64) -> Option<Seen> {
        let w = self.word.load(Ordering::Acquire);
        (state_of(w) == OPEN && now >= self.open_until.load(Ordering::Acquire)).then(|| Seen::of(w))
    }

    /// Admits a call, rejects it, or says that the breaker is due to turn
    /// half-open. The clock is read only when the breaker is not closed.
    pub(crate) fn admit(&self, core: &Core) -> Admission {
        loop {
            let w = self.word.load(Ordering::Acquire);
            match state_of(w) {
                CLOSED => {
                    return Admission::Admitted(Ticket {
                        gen: gen_of(w),
                        probe: false,
                    })
                }
                OPEN => {
                    let now = core.now_nanos();
                    let until = self.open_until.load(Ordering::Acquire);
                    return if now < until {
                        Admission::Rejected(Duration::from_nanos(until - now))
                    } else {
                        Admission::Due(Seen::of(w), now)
                    };
                }
                _ if in_flight_of(w) >= core.config.half_open_probes => {
                    return Admission::Rejected(HALF_OPEN_RETRY_AFTER);
                }
                _ => {
                    let probe = w + IN_FLIGHT_ONE;
                    if self
                        .word
                        .compare_exchange_weak(w, probe, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Admission::Admitted(Ticket {
                            gen: gen_of(w),
                            probe: true,
                        });
                    }
                }
            }
        }
    }

    /// Records the outcome of a call admitted with `ticket`, finished at
    /// `now`. `slow` says whether its headers took longer than the slow-call
    /// threshold.
    pub(crate) fn record(
        &self,
        core: &Core,
        ticket: Ticket,
        verdict: Verdict,
        slow: bool,
        now: u64,
    ) -> Option<Change> {
        if ticket.probe {
            return self.record_probe(core, ticket, verdict, slow, now);
        }
        if verdict == Verdict::Ignore {
            return None;
        }
        let w = self.word.load(Ordering::Acquire);
        if Seen::of(w) != seen(ticket) {
            // Admitted before the breaker last changed state: stale.
            return None;
        }
        let epoch = core.epoch(now);
        let failure = verdict == Verdict::Failure;
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
            last_bad != 0 && (epoch + 1).saturating_sub(last_bad) < u64::from(core.config.buckets)
        };
        if !check {
            return None;
        }
        let reason = self.should_trip(core, epoch, consecutive)?;
        self.transition(core, Some(seen(ticket)), Target::Tripped, reason, now)
    }

    fn record_probe(
        &self,
        core: &Core,
        ticket: Ticket,
        verdict: Verdict,
        slow: bool,
        now: u64,
    ) -> Option<Change> {
        let failed = match verdict {
            Verdict::Failure => Some(TransitionReason::ProbeFailed),
            Verdict::Success if slow && core.config.slow_call.is_some() => {
                Some(TransitionReason::ProbeSlow)
            }
            _ => None,
        };
        if let Some(reason) = failed {
            return self.transition(core, Some(seen(ticket)), Target::Tripped, reason, now);
        }
        let success = verdict == Verdict::Success;
        loop {
            let w = self.word.load(Ordering::Acquire);
            if Seen::of(w) != seen(ticket) {
                return None;
            }
            let next = if success {
                w - IN_FLIGHT_ONE + SUCCESS_ONE
            } else {
                w - IN_FLIGHT_ONE
            };
            if self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if success && successes_of(next) >= core.config.half_open_successes {
                    let reason = TransitionReason::ProbesSucceeded;
                    return self.transition(core, Some(seen(ticket)), Target::Closed, reason, now);
                }
                return None;
            }
        }
    }

    fn should_trip(&self, core: &Core, epoch: u64, consecutive: u32) -> Option<TransitionReason> {
        let c = &core.config;
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

    /// Moves the breaker to `to`, if it is still in the state `seen` (any
    /// state when `None`), at `now`. Returns the change to report: every
    /// change of state, and every opening (a forced one may open an open
    /// breaker again).
    pub(crate) fn transition(
        &self,
        core: &Core,
        seen: Option<Seen>,
        to: Target,
        reason: TransitionReason,
        now: u64,
    ) -> Option<Change> {
        let _serialized = self.lock();
        let w = self.word.load(Ordering::Acquire);
        if seen.is_some_and(|seen| seen != Seen::of(w)) {
            return None;
        }
        let from = public_state(w);
        let mut counts = Counts::default();
        let (state, open_duration) = match to {
            Target::Tripped => {
                let trips = match from {
                    CircuitState::Closed => 1,
                    _ => self.trips.load(Ordering::Relaxed).saturating_add(1),
                };
                self.trips.store(trips, Ordering::Relaxed);
                counts = self.window.counts(core.epoch(now));
                (OPEN, Some(core.config.open_duration_after(trips)))
            }
            Target::Open(d) => (OPEN, Some(d)),
            Target::HalfOpen if now < self.open_until.load(Ordering::Acquire) => return None,
            Target::HalfOpen => (HALF_OPEN, None),
            Target::Closed => {
                self.trips.store(0, Ordering::Relaxed);
                (CLOSED, None)
            }
        };
        if let Some(d) = open_duration {
            let until = now.saturating_add(saturating_nanos(d));
            self.open_until.store(until, Ordering::Release);
        }
        if state != HALF_OPEN {
            // Opening or closing starts the window afresh.
            self.window.reset();
            self.consecutive.store(0, Ordering::Release);
            self.last_bad_epoch.store(0, Ordering::Release);
        }
        let next = pack(gen_of(w).wrapping_add(1), state);
        self.word.store(next, Ordering::Release);
        let to = public_state(next);
        (from != to || open_duration.is_some()).then_some(Change {
            from,
            to,
            reason,
            open_duration,
            counts,
        })
    }

    /// The breaker's state and counts at `now`, under `key`.
    pub(crate) fn snapshot(&self, core: &Core, key: Arc<str>, now: u64) -> BreakerSnapshot {
        let w = self.word.load(Ordering::Acquire);
        let counts = self.window.counts(core.epoch(now));
        let open_remaining = (state_of(w) == OPEN).then(|| {
            Duration::from_nanos(self.open_until.load(Ordering::Acquire).saturating_sub(now))
        });
        BreakerSnapshot {
            key,
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

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
