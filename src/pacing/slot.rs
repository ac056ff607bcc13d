//! One key's pacing state: the instant until which the upstream refuses,
//! the rate's theoretical arrival time, and the turn of the calls waiting.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::core::Core;
use super::rate::{wait_until, Gcra};
use super::state::{HoldCause, PacingAction, PacingEvent};
use crate::metrics::HeldSeries;
use crate::util::saturating_nanos;

/// What a call may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go out now.
    Go,
    /// Wait until `at` (nanoseconds), then ask again. A wait for the rate
    /// has taken its slot already.
    Wait { at: u64, cause: HoldCause },
    /// Not now and not within what the call can wait: the key takes calls
    /// again at `at`.
    Refuse { at: u64, cause: HoldCause },
}

/// One key of a registry and its state. Times are nanoseconds on the
/// layer's clock ([`Core`]).
pub(crate) struct Slot {
    core: Arc<Core>,
    /// The hash that finds the slot in its registry.
    fingerprint: u64,
    /// The key as the extractor names it (never a credential).
    key: Arc<str>,
    /// The instant until which the upstream refuses calls; 0: never held.
    /// Only ever raised (a hold that has ended is cleared to 0).
    held_until: AtomicU64,
    /// The rate's theoretical arrival time.
    tat: AtomicU64,
    /// The turns handed to waiting calls: each takes the next one, which
    /// places its release in the release window.
    turns: AtomicU64,
    /// Last use, milliseconds on the layer's clock.
    last_used: AtomicU64,
    /// Order of creation in its registry (breaks ties between equal
    /// `last_used` times, oldest first).
    seq: u64,
    /// The calls held back or refused, as a metric.
    held: HeldSeries,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("held_until", &self.held_until.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub(crate) fn new(core: Arc<Core>, fingerprint: u64, key: Arc<str>, seq: u64) -> Self {
        let now = core.now_nanos();
        Slot {
            core,
            fingerprint,
            key,
            held_until: AtomicU64::new(0),
            tat: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            last_used: AtomicU64::new(now / 1_000_000),
            seq,
            held: HeldSeries::new(),
        }
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The instant (nanoseconds) until which the key is held; 0 when it
    /// never was or the hold was cleared. One atomic load.
    #[inline]
    pub(crate) fn held_until(&self) -> u64 {
        self.held_until.load(Ordering::Acquire)
    }

    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Whether nothing about the key outlives `now`: no hold, and a rate
    /// at rest (forgetting the key loses nothing).
    pub(crate) fn is_idle(&self, now: u64) -> bool {
        self.held_until() <= now && self.tat.load(Ordering::Relaxed) <= now
    }

    /// Holds the key until `until`, unless it is held longer already.
    /// Returns whether the hold grew; tells the callbacks when it did.
    pub(crate) fn hold(&self, until: u64, now: u64) -> bool {
        let before = self.held_until.fetch_max(until, Ordering::AcqRel);
        if before >= until {
            return false;
        }
        self.touch(now);
        self.tell(PacingAction::Learnt, HoldCause::Upstream, until, now);
        true
    }

    /// Counts a call held back or refused, once per call.
    pub(crate) fn count_held(&self) {
        self.held.held(&self.key);
    }

    /// Tells the callbacks what happened at `now` to a call (or a hold)
    /// whose instant is `at`.
    pub(crate) fn tell(&self, action: PacingAction, cause: HoldCause, at: u64, now: u64) {
        self.core.emit(PacingEvent {
            key: self.key.clone(),
            action,
            cause,
            wait: wait_until(at, now),
            until: self.core.instant(at),
        });
    }

    /// Decides for a call at `now` that may wait until `latest` at most.
    ///
    /// A held key sends its waiting calls back at the end of the hold plus
    /// their place in the release window; a rate gives the next free slot
    /// and takes it for the call (a refused call takes nothing).
    pub(crate) fn admit(&self, rate: Option<Gcra>, now: u64, latest: u64) -> Admission {
        self.touch(now);
        let held = self.held_until();
        let window = saturating_nanos(self.core.config.release_window);
        if held > now {
            let at = held.saturating_add(self.release_offset(window));
            let cause = HoldCause::Upstream;
            return if at <= latest {
                Admission::Wait { at, cause }
            } else {
                Admission::Refuse { at: held, cause }
            };
        }
        if held != 0 && held.saturating_add(window) > now {
            // The release window: calls that arrive in it (a retry that
            // slept for the same hint) take their turn like those that
            // waited, so that they too are spread.
            let at = held.saturating_add(self.release_offset(window));
            if at > now {
                let cause = HoldCause::Upstream;
                return if at <= latest {
                    Admission::Wait { at, cause }
                } else {
                    Admission::Refuse { at, cause }
                };
            }
        } else if held != 0 {
            // Ended: later calls skip the clock. A hold raised meanwhile
            // stays.
            let _ = self
                .held_until
                .compare_exchange(held, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        let Some(gcra) = rate else {
            return Admission::Go;
        };
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let (at, next) = gcra.schedule(tat, now);
            let cause = HoldCause::Rate;
            if at > latest {
                return Admission::Refuse { at, cause };
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if at <= now => return Admission::Go,
                Ok(_) => return Admission::Wait { at, cause },
                Err(seen) => tat = seen,
            }
        }
    }

    /// Where the next waiting call is released in the window after the
    /// hold: turns follow the golden ratio, so that any run of calls is
    /// spread evenly over the window, however many there are.
    fn release_offset(&self, window: u64) -> u64 {
        if window == 0 {
            return 0;
        }
        let turn = self.turns.fetch_add(1, Ordering::Relaxed);
        let fraction = turn.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        ((u128::from(fraction) * u128::from(window)) >> 32) as u64
    }

    fn touch(&self, now: u64) {
        let ms = now / 1_000_000;
        if self.last_used.load(Ordering::Relaxed) != ms {
            self.last_used.store(ms, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::PacingConfig;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn slot(config: PacingConfig) -> Slot {
        Slot::new(Arc::new(Core::new(config)), 1, Arc::from("k"), 0)
    }

    #[tokio::test(start_paused = true)]
    async fn holds_only_grow_and_end() {
        let s = slot(PacingConfig::new().release_window(Duration::ZERO));
        assert!(s.hold(2_000 * MS, 0));
        assert!(!s.hold(1_000 * MS, 0), "a shorter hold changes nothing");
        assert_eq!(s.held_until(), 2_000 * MS);
        let at = 300 * MS;
        assert_eq!(
            s.admit(None, at, u64::MAX),
            Admission::Wait {
                at: 2_000 * MS,
                cause: HoldCause::Upstream
            }
        );
        assert_eq!(
            s.admit(None, at, 1_000 * MS),
            Admission::Refuse {
                at: 2_000 * MS,
                cause: HoldCause::Upstream
            }
        );
        assert_eq!(s.admit(None, 2_000 * MS, 2_000 * MS), Admission::Go);
        assert_eq!(s.held_until(), 0, "an ended hold is cleared");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_spread_over_the_window() {
        let s = slot(PacingConfig::new().release_window(Duration::from_millis(200)));
        s.hold(1_000 * MS, 0);
        let mut at: Vec<u64> = (0..8)
            .map(|_| match s.admit(None, 0, u64::MAX) {
                Admission::Wait { at, .. } => at,
                other => panic!("{other:?}"),
            })
            .collect();
        at.sort_unstable();
        assert!(at.iter().all(|&t| (1_000 * MS..1_200 * MS).contains(&t)));
        // No two together, and no gap wider than twice an even share.
        let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g > 0 && g <= 50 * MS), "{at:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_the_release_window_take_their_turn() {
        let s = slot(PacingConfig::new().release_window(Duration::from_millis(200)));
        s.hold(1_000 * MS, 0);
        // Turn 0 goes at the end of the hold, turn 1 at 0.618 of the window.
        assert_eq!(s.admit(None, 1_000 * MS, u64::MAX), Admission::Go);
        let Admission::Wait { at, .. } = s.admit(None, 1_000 * MS, u64::MAX) else {
            panic!("the second call waits its turn");
        };
        assert!((1_123 * MS..1_124 * MS).contains(&at), "{at}");
        // Turn 2 (0.236) is already past at 1.15 s.
        assert_eq!(s.admit(None, 1_150 * MS, u64::MAX), Admission::Go);
        // After the window, the hold is forgotten.
        assert_eq!(s.admit(None, 1_200 * MS, u64::MAX), Admission::Go);
        assert_eq!(s.held_until(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_call_takes_no_rate_slot() {
        let s = slot(PacingConfig::new());
        let rate = Gcra::per_minute(3);
        assert_eq!(s.admit(rate, 0, 0), Admission::Go);
        let refused = s.admit(rate, 0, 0);
        assert_eq!(
            refused,
            Admission::Refuse {
                at: 20_000 * MS,
                cause: HoldCause::Rate
            }
        );
        assert_eq!(
            s.admit(rate, 0, u64::MAX),
            Admission::Wait {
                at: 20_000 * MS,
                cause: HoldCause::Rate
            }
        );
        assert!(!s.is_idle(30_000 * MS));
        assert!(s.is_idle(40_000 * MS));
    }
}
