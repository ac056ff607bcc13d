//! [`Timing`]: what the layers of one call tell each other about time, so
//! that the clock is read and a timer armed once: when a layer outside
//! sends the call (or an attempt), and the timers the layers inside arm.

#[cfg(feature = "timeout")]
use std::sync::atomic::AtomicUsize;
#[cfg(any(feature = "retry", feature = "timeout"))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::util::saturating_nanos;

/// No instant (a deadline, a timer): the largest count of nanoseconds.
pub(super) const NONE: u64 = u64::MAX;

/// `at`, in nanoseconds after `base` (below [`NONE`]; 0 before `base`).
pub(super) fn nanos_after(base: Instant, at: Instant) -> u64 {
    saturating_nanos(at.saturating_duration_since(base)).min(NONE - 1)
}

/// The instant `nanos` after `base`; `None` for [`NONE`].
pub(super) fn instant_at(base: Instant, nanos: u64) -> Option<Instant> {
    (nanos != NONE).then(|| base + Duration::from_nanos(nanos))
}

/// The call's timing state, in its context. Instants are nanoseconds after
/// the context's making.
#[cfg(any(feature = "retry", feature = "timeout"))]
pub(super) struct Timing {
    /// When a layer outside sends the call (or an attempt), and whether it
    /// is doing so now (see [`Timed::send`]).
    sent: AtomicU64,
    sending: AtomicBool,
    /// The task (its waker's data and vtable) polling the total timeout,
    /// and the earliest timer a layer inside armed for that task during
    /// the poll under way ([`NONE`] when none).
    #[cfg(feature = "timeout")]
    poller: [AtomicUsize; 2],
    #[cfg(feature = "timeout")]
    timer_inside: AtomicU64,
}

#[cfg(any(feature = "retry", feature = "timeout"))]
impl Timing {
    pub(super) fn new() -> Self {
        Timing {
            sent: AtomicU64::new(0),
            sending: AtomicBool::new(false),
            #[cfg(feature = "timeout")]
            poller: [AtomicUsize::new(0), AtomicUsize::new(0)],
            #[cfg(feature = "timeout")]
            timer_inside: AtomicU64::new(NONE),
        }
    }
}

/// A call's [`Timing`], read and written through its context
/// ([`CallContext::timing`](super::CallContext::timing)).
#[cfg(any(feature = "retry", feature = "timeout"))]
pub(crate) struct Timed<'a> {
    timing: &'a Timing,
    base: Instant,
}

#[cfg(any(feature = "retry", feature = "timeout"))]
impl<'a> Timed<'a> {
    pub(super) fn new(timing: &'a Timing, base: Instant) -> Self {
        Timed { timing, base }
    }

    /// Calls `call`, which sends the call (or one attempt) to the layers
    /// inside at `at`: while it runs, they learn the instant from
    /// [`sending`](Self::sending) instead of reading the clock.
    pub(crate) fn send<F>(&self, at: Instant, call: impl FnOnce() -> F) -> F {
        let t = self.timing;
        let before = (
            t.sent.load(Ordering::Relaxed),
            t.sending.load(Ordering::Relaxed),
        );
        t.sent.store(nanos_after(self.base, at), Ordering::Relaxed);
        t.sending.store(true, Ordering::Relaxed);
        let future = call();
        t.sent.store(before.0, Ordering::Relaxed);
        t.sending.store(before.1, Ordering::Relaxed);
        future
    }

    /// When a layer outside is sending the call (or an attempt), while it
    /// does so ([`send`](Self::send)); `None` otherwise.
    pub(crate) fn sending(&self) -> Option<Instant> {
        let t = self.timing;
        let sent = t.sent.load(Ordering::Relaxed);
        t.sending
            .load(Ordering::Relaxed)
            .then(|| self.base + Duration::from_nanos(sent))
    }

    /// The total timeout is about to poll the layers inside for `task` (a
    /// waker's data and vtable): the timers they arm for it are noted.
    #[cfg(feature = "timeout")]
    pub(crate) fn watch_timers(&self, task: [usize; 2]) {
        let t = self.timing;
        t.poller[0].store(task[0], Ordering::Relaxed);
        t.poller[1].store(task[1], Ordering::Relaxed);
        t.timer_inside.store(NONE, Ordering::Relaxed);
    }

    /// A layer inside armed a timer at `at` that wakes `task`: noted when
    /// that task is the one polling the total timeout.
    #[cfg(feature = "timeout")]
    pub(crate) fn timer_armed(&self, task: [usize; 2], at: Instant) {
        let t = self.timing;
        let poller = [0, 1].map(|i| t.poller[i].load(Ordering::Relaxed));
        if poller == task {
            let nanos = nanos_after(self.base, at);
            t.timer_inside.fetch_min(nanos, Ordering::Relaxed);
        }
    }

    /// A timer noted with [`timer_armed`](Self::timer_armed) was dropped:
    /// the total timeout arms its own on its next wait.
    #[cfg(feature = "timeout")]
    pub(crate) fn timer_dropped(&self) {
        self.timing.timer_inside.store(NONE, Ordering::Relaxed);
    }

    /// The earliest timer a layer inside armed during the poll under way
    /// for the task polling the total timeout: that task wakes by then.
    #[cfg(feature = "timeout")]
    pub(crate) fn timer_inside(&self) -> Option<Instant> {
        instant_at(self.base, self.timing.timer_inside.load(Ordering::Relaxed))
    }
}
