//! [`CallContext`]: the state every layer of one call shares.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
#[cfg(feature = "circuit-breaker")]
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

#[cfg(feature = "circuit-breaker")]
use super::settle::Pending;
use super::timing::{instant_at, nanos_after, NONE};
#[cfg(any(feature = "retry", feature = "timeout"))]
use super::timing::{Timed, Timing};
#[cfg(feature = "timeout")]
use crate::util::saturating_nanos;

/// An attempt loop owns the call: the layers inside leave their outcomes
/// pending until the call ends.
const OWNED: u8 = 1;
/// At least one outcome is pending.
#[cfg(feature = "circuit-breaker")]
const PENDING: u8 = 2;
/// The request asks for a stream: the first-byte clock bounds its headers.
const STREAMING: u8 = 4;
/// The attempt under way is not the call's last chance: another target
/// remains, so a layer inside should refuse rather than wait.
const ANOTHER_TARGET: u8 = 8;
/// A second attempt loop runs inside the one that owns the call: the inner
/// one counts the attempts it sends in the metrics.
#[cfg(feature = "retry")]
const INNER_LOOP: u8 = 16;

/// Pending outcomes kept at once, one per layer (two nested breakers).
#[cfg(feature = "circuit-breaker")]
const SLOTS: usize = 2;

/// The context of one call, shared by every layer that sees it and by every
/// attempt (one `Arc`).
#[derive(Clone)]
pub(crate) struct CallContext(Arc<Shared>);

struct Shared {
    /// When the context was made: deadlines are kept as nanoseconds after it.
    base: Instant,
    /// The deadline, in nanoseconds after `base`; [`NONE`] when none.
    deadline: AtomicU64,
    /// A streaming call's first-byte clock (nanoseconds; [`NONE`] when no
    /// timeout published one), and the instant (after `base`) it runs out
    /// for the call's first attempt.
    #[cfg(any(feature = "timeout", feature = "retry"))]
    first_byte: AtomicU64,
    first_byte_by: AtomicU64,
    /// What the layers tell each other about time.
    #[cfg(any(feature = "retry", feature = "timeout"))]
    timing: Timing,
    /// Attempts sent so far.
    attempts: AtomicU32,
    /// One more than the last attempt a timeout cut short (0: none was);
    /// attempt 0 is a call no attempt loop counts.
    #[cfg(any(feature = "timeout", feature = "retry", feature = "circuit-breaker"))]
    cut: AtomicU32,
    /// The attempt loop and the attempts in flight that keep the call open.
    #[cfg(any(feature = "retry", feature = "circuit-breaker"))]
    holds: AtomicU32,
    flags: AtomicU8,
    #[cfg(feature = "circuit-breaker")]
    pending: Mutex<[Option<Pending>; SLOTS]>,
}

impl CallContext {
    fn new(base: Instant) -> Self {
        CallContext(Arc::new(Shared {
            base,
            deadline: AtomicU64::new(NONE),
            #[cfg(any(feature = "timeout", feature = "retry"))]
            first_byte: AtomicU64::new(NONE),
            first_byte_by: AtomicU64::new(NONE),
            #[cfg(any(feature = "retry", feature = "timeout"))]
            timing: Timing::new(),
            attempts: AtomicU32::new(0),
            #[cfg(any(feature = "timeout", feature = "retry", feature = "circuit-breaker"))]
            cut: AtomicU32::new(0),
            #[cfg(any(feature = "retry", feature = "circuit-breaker"))]
            holds: AtomicU32::new(0),
            flags: AtomicU8::new(0),
            #[cfg(feature = "circuit-breaker")]
            pending: Mutex::new([None, None]),
        }))
    }

    /// The call's context in `extensions`, if a layer made one.
    pub(crate) fn get(extensions: &http::Extensions) -> Option<&CallContext> {
        extensions.get::<CallContext>()
    }

    /// The call's context in `extensions`, made and put there now when
    /// absent.
    pub(crate) fn get_or_insert(extensions: &mut http::Extensions) -> &CallContext {
        extensions.get_or_insert_with(|| CallContext::new(Instant::now()))
    }

    /// [`get_or_insert`](Self::get_or_insert) for a caller that has just
    /// read the clock: `now`.
    #[cfg(any(feature = "timeout", feature = "retry"))]
    pub(crate) fn get_or_insert_at(
        extensions: &mut http::Extensions,
        now: Instant,
    ) -> &CallContext {
        extensions.get_or_insert_with(|| CallContext::new(now))
    }

    /// The deadline in force, if any layer set one.
    ///
    /// For a streaming call that no attempt loop owns, the first-byte clock
    /// bounds the call too (its headers are due then); an attempt loop runs
    /// that clock per attempt, and the call's deadline is its total.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let mut nanos = self.0.deadline.load(Ordering::Acquire);
        if self.0.flags.load(Ordering::Acquire) & (OWNED | STREAMING) == STREAMING {
            nanos = nanos.min(self.0.first_byte_by.load(Ordering::Acquire));
        }
        self.at(nanos)
    }

    fn at(&self, nanos: u64) -> Option<Instant> {
        instant_at(self.0.base, nanos)
    }

    fn nanos_after_base(&self, at: Instant) -> u64 {
        nanos_after(self.0.base, at)
    }

    /// A timeout publishes its first-byte clock `len`, which runs out at
    /// `by` for the call's first attempt; `streaming` when the request
    /// asks for a stream. The shortest clock published wins.
    #[cfg(feature = "timeout")]
    pub(crate) fn set_first_byte(&self, len: Duration, by: Instant, streaming: bool) {
        store_min(&self.0.first_byte_by, self.nanos_after_base(by));
        store_min(&self.0.first_byte, saturating_nanos(len).min(NONE - 1));
        if streaming {
            self.0.flags.fetch_or(STREAMING, Ordering::AcqRel);
        }
    }

    /// The first-byte clock a timeout published, and the instant it runs
    /// out for the first attempt.
    #[cfg(feature = "retry")]
    pub(crate) fn first_byte(&self) -> Option<(Duration, Instant)> {
        let len = self.0.first_byte.load(Ordering::Acquire);
        let by = self.0.first_byte_by.load(Ordering::Acquire);
        Some((Duration::from_nanos(len), self.at(by)?)).filter(|_| len != NONE)
    }

    /// Whether the request asks for a stream (a timeout found out).
    #[cfg(feature = "retry")]
    pub(crate) fn is_streaming(&self) -> bool {
        self.0.flags.load(Ordering::Acquire) & STREAMING != 0
    }

    /// The attempt loop says whether another target remains after the
    /// attempt it is about to send.
    #[cfg(feature = "retry")]
    pub(crate) fn set_another_target(&self, remains: bool) {
        if remains == self.another_target_remains() {
            return;
        }
        if remains {
            self.0.flags.fetch_or(ANOTHER_TARGET, Ordering::AcqRel);
        } else {
            self.0.flags.fetch_and(!ANOTHER_TARGET, Ordering::AcqRel);
        }
    }

    /// Whether another target remains after the attempt under way: a layer
    /// inside that would make it wait refuses it instead, and the loop
    /// moves on.
    #[cfg_attr(not(feature = "pacing"), allow(dead_code))]
    pub(crate) fn another_target_remains(&self) -> bool {
        self.0.flags.load(Ordering::Acquire) & ANOTHER_TARGET != 0
    }

    /// Sets the deadline to `at` unless an earlier one is in force; returns
    /// the one in force. A deadline before the context was made counts as
    /// that instant (both have passed).
    pub(crate) fn set_deadline_earliest(&self, at: Instant) -> Instant {
        let nanos = self.nanos_after_base(at);
        let before = self.0.deadline.fetch_min(nanos, Ordering::AcqRel);
        self.0.base + Duration::from_nanos(before.min(nanos))
    }

    /// What the layers of the call tell each other about time: when a
    /// layer outside sends it, the timers the layers inside arm.
    #[cfg(any(feature = "retry", feature = "timeout"))]
    pub(crate) fn timing(&self) -> Timed<'_> {
        Timed::new(&self.0.timing, self.0.base)
    }

    /// Attempts sent so far (0 when no attempt loop counts them).
    pub(crate) fn attempts(&self) -> u32 {
        self.0.attempts.load(Ordering::Acquire)
    }

    /// Counts one more attempt sent; returns its number (1 for the first).
    #[cfg(feature = "retry")]
    pub(crate) fn count_attempt(&self) -> u32 {
        self.0
            .attempts
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1)
    }

    /// Sent nothing after all: the attempt last counted was refused by a
    /// layer inside (an open breaker, pacing) before it left.
    #[cfg(feature = "retry")]
    pub(crate) fn uncount_attempt(&self) {
        let _ = self
            .0
            .attempts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// A timeout cut the call short, or the attempt loop gave up on the
    /// attempt in flight as failed (a stream that stalled or opened with an
    /// error): the attempt in flight (or the last one) failed.
    #[cfg(any(feature = "timeout", feature = "retry"))]
    pub(crate) fn mark_cut(&self) {
        let current = self.attempts().saturating_add(1);
        self.0.cut.fetch_max(current, Ordering::AcqRel);
    }

    /// Whether a timeout cut attempt `attempt` (as [`attempts`](Self::attempts)
    /// read when it was sent) short.
    #[cfg(feature = "circuit-breaker")]
    pub(crate) fn is_cut(&self, attempt: u32) -> bool {
        let cut = self.0.cut.load(Ordering::Acquire);
        cut > attempt
    }

    /// Whether an attempt loop owns the call.
    pub(crate) fn is_owned(&self) -> bool {
        self.0.flags.load(Ordering::Acquire) & OWNED != 0
    }

    /// An attempt loop takes the call: it holds it open until
    /// [`release`](Self::release). A loop that finds the call owned marks
    /// it as run by an inner loop too.
    #[cfg(feature = "retry")]
    pub(crate) fn own(&self) {
        let before = self.0.flags.fetch_or(OWNED, Ordering::AcqRel);
        if before & OWNED != 0 {
            self.0.flags.fetch_or(INNER_LOOP, Ordering::AcqRel);
        }
        self.hold();
    }

    /// Whether a loop inside the owning one runs the call's attempts.
    #[cfg(feature = "retry")]
    pub(crate) fn has_inner_loop(&self) -> bool {
        self.0.flags.load(Ordering::Acquire) & INNER_LOOP != 0
    }

    /// An attempt in flight holds the call open until it is
    /// [left](Self::leave) or [released](Self::release).
    #[cfg(any(feature = "retry", feature = "circuit-breaker"))]
    pub(crate) fn hold(&self) {
        self.0.holds.fetch_add(1, Ordering::AcqRel);
    }

    /// Lets go of a hold; the last one settles every pending outcome.
    #[cfg(any(feature = "retry", feature = "circuit-breaker"))]
    pub(crate) fn release(&self) {
        let last = self.0.holds.fetch_sub(1, Ordering::AcqRel) == 1;
        #[cfg(feature = "circuit-breaker")]
        if last {
            self.settle_all();
        }
        #[cfg(not(feature = "circuit-breaker"))]
        let _ = last;
    }

    /// An attempt in flight finished with `outcome`, the latest of its
    /// layer: kept pending while the call goes on (replacing the earlier
    /// one of the same breaker; settling at once the one of another
    /// breaker of the same layer), recorded now when it ends the call.
    /// Then its hold is let go.
    #[cfg(feature = "circuit-breaker")]
    pub(crate) fn leave(&self, outcome: Pending) {
        if self.0.holds.load(Ordering::Acquire) == 1 {
            // The call is over: nothing can hold it again.
            let earlier = self.take_pending();
            for p in earlier.into_iter().flatten() {
                if !p.same_settler(&outcome) {
                    p.settle();
                }
            }
            outcome.settle();
        } else if let Some(evicted) = self.keep(outcome) {
            evicted.settle();
        }
        self.release();
    }

    /// Keeps `outcome` pending; returns an earlier outcome to settle now.
    #[cfg(feature = "circuit-breaker")]
    fn keep(&self, outcome: Pending) -> Option<Pending> {
        let mut slots = self.lock();
        let evicted = match slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|p| p.same_layer(&outcome)))
        {
            Some(slot) => {
                let earlier = slot.replace(outcome).expect("found occupied");
                let superseded = slot.as_ref().is_some_and(|p| p.same_settler(&earlier));
                (!superseded).then_some(earlier)
            }
            None => match slots.iter_mut().find(|s| s.is_none()) {
                Some(slot) => {
                    *slot = Some(outcome);
                    None
                }
                None => {
                    // More layers than slots: the oldest is settled now.
                    let oldest = slots[0].take();
                    slots.rotate_left(1);
                    slots[SLOTS - 1] = Some(outcome);
                    oldest
                }
            },
        };
        self.0.flags.fetch_or(PENDING, Ordering::AcqRel);
        evicted
    }

    #[cfg(feature = "circuit-breaker")]
    fn take_pending(&self) -> [Option<Pending>; SLOTS] {
        if self.0.flags.load(Ordering::Acquire) & PENDING == 0 {
            return [None, None];
        }
        let mut slots = self.lock();
        self.0.flags.fetch_and(!PENDING, Ordering::AcqRel);
        std::mem::take(&mut *slots)
    }

    #[cfg(feature = "circuit-breaker")]
    fn settle_all(&self) {
        for p in self.take_pending().into_iter().flatten() {
            p.settle();
        }
    }

    #[cfg(feature = "circuit-breaker")]
    fn lock(&self) -> MutexGuard<'_, [Option<Pending>; SLOTS]> {
        self.0.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lowers `slot` to `value` if that is smaller; the first value published
/// (one timeout per call, the common case) is a plain store.
#[cfg(feature = "timeout")]
fn store_min(slot: &AtomicU64, value: u64) {
    match slot.load(Ordering::Acquire) {
        NONE => slot.store(value, Ordering::Release),
        current if value < current => {
            slot.fetch_min(value, Ordering::AcqRel);
        }
        _ => {}
    }
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("deadline", &self.deadline())
            .field("attempts", &self.attempts())
            .field("owned", &self.is_owned())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "full"))]
#[path = "context_tests.rs"]
mod tests;
