//! A breaker's link to the fleet: what one key's breaker reads from and
//! publishes to a [`FleetMirror`](crate::fleet::FleetMirror).
//!
//! - **Admission** reads the fleet's open of the key through the mirror
//!   entry kept beside the breaker: one atomic load while the fleet holds
//!   nothing for the key. An open the fleet holds longer than the breaker
//!   knows opens the breaker for the time left, without publishing it again.
//! - **A trip** (or a forced open) is published with its deadline; **a
//!   close** after the probes succeeded (or a forced one) is published as a
//!   compare-and-delete of the open the probe saw when it started.
//! - **The half-open probe** is the fleet's: a probe slot the breaker hands
//!   out asks the mirror for the fleet's probe lease first. Another replica
//!   holding it sends the call back as `circuit_open` (asking again at most
//!   once a second); a store that does not answer in time leaves the
//!   decision to the breaker alone. When the fleet says that another
//!   replica's probe succeeded, an open or half-open breaker closes without
//!   a probe of its own.
//!
//! Without the `fleet` feature the link is a type with no values: every
//! breaker's link is `None` and nothing here runs.

#[cfg(feature = "fleet")]
pub(crate) use link::{FleetLink, ProbeAsk};
#[cfg(not(feature = "fleet"))]
pub(crate) use none::{FleetLink, ProbeAsk};

/// What the fleet says to a probe slot the breaker handed out.
#[derive(Debug)]
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub(crate) enum Probing {
    /// Ask the store for the fleet's probe, then send it or not.
    Ask(ProbeAsk),
    /// Another replica probes: wait this long.
    Wait(std::time::Duration),
    /// Another replica's probe succeeded: close without probing.
    Closed,
}

#[cfg(feature = "fleet")]
mod link {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{ready, Context, Poll};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Probing;
    use crate::circuit_breaker::breaker::{Breaker, Change, Target};
    use crate::circuit_breaker::core::Core;
    use crate::circuit_breaker::state::{CircuitState, TransitionReason};
    use crate::fleet::{Answer, FleetEntry, FleetMirror, Probe, Trip};
    use crate::util::saturating_nanos;

    /// A fleet open ending within this of what the breaker knows is the
    /// same open (this replica's own, come back through the store with the
    /// store's rounding and latency): it changes nothing.
    const SAME_OPEN: Duration = Duration::from_secs(1);

    /// The longest a replica waits before it asks again for a probe lease
    /// another replica holds: the holder's probe may close the breaker
    /// long before its lease ends.
    const ASK_AGAIN: Duration = Duration::from_secs(1);

    /// What one breaker keeps of the fleet.
    #[derive(Debug)]
    pub(crate) struct FleetLink {
        mirror: FleetMirror,
        key: Box<str>,
        entry: FleetEntry,
        /// Until when (nanoseconds on the layer's clock) another replica
        /// holds the probe lease, as far as this one knows.
        denied_until: AtomicU64,
        /// The fleet's open as this replica's probe saw it when it started:
        /// the one a success closes.
        trip: Mutex<Option<Trip>>,
        /// The closes the fleet had said when the breaker last opened: one
        /// more means another replica's probe succeeded since.
        closes: AtomicU64,
    }

    impl FleetLink {
        /// The link of `key`'s breaker, when its layer shares a fleet.
        pub(crate) fn of(core: &Core, key: &str) -> Option<Arc<FleetLink>> {
            let mirror = core.fleet.get()?;
            let entry = mirror.breaker_entry(key);
            Some(Arc::new(FleetLink {
                mirror: mirror.clone(),
                key: key.into(),
                closes: AtomicU64::new(entry.closes()),
                entry,
                denied_until: AtomicU64::new(0),
                trip: Mutex::new(None),
            }))
        }

        /// Opens `breaker` for the time left on an open the fleet holds
        /// longer than the breaker knows of (beyond [`SAME_OPEN`]); the
        /// change to report. One atomic load when the fleet holds nothing.
        #[inline]
        pub(crate) fn learn(&self, core: &Core, breaker: &Breaker) -> Option<Change> {
            let until = self.entry.until()?;
            self.learn_until(core, breaker, until)
        }

        fn learn_until(&self, core: &Core, breaker: &Breaker, until: Instant) -> Option<Change> {
            let now = Instant::now();
            let left = until.checked_duration_since(now).filter(|d| !d.is_zero())?;
            let known = match breaker.open_until() {
                0 => 0,
                open => open.saturating_add(saturating_nanos(SAME_OPEN)),
            };
            if core.nanos_at(until) <= known {
                return None;
            }
            let (to, reason) = (Target::Open(left), TransitionReason::Fleet);
            breaker.transition(core, None, to, reason, core.nanos_at(now))
        }

        /// Whether another replica's probe succeeded since the breaker
        /// last opened.
        pub(crate) fn closed_elsewhere(&self) -> bool {
            self.entry.closes() != self.closes.load(Ordering::Acquire)
        }

        /// Closes `breaker`: another replica's probe succeeded.
        pub(crate) fn close(&self, core: &Core, breaker: &Breaker) -> Option<Change> {
            let (to, reason) = (Target::Closed, TransitionReason::Fleet);
            breaker.transition(core, None, to, reason, core.now_nanos())
        }

        /// Publishes what `change` did locally: an open (but one learnt
        /// from the fleet) with its deadline `open_until`, or a close after
        /// the probes succeeded or by force.
        pub(crate) fn publish(&self, core: &Core, change: &Change, open_until: u64) {
            if change.to == CircuitState::Open {
                self.closes.store(self.entry.closes(), Ordering::Release);
            }
            match (change.to, change.reason) {
                (_, TransitionReason::Fleet) => {}
                (CircuitState::Open, _) => {
                    let until = core.instant(open_until);
                    self.mirror.publish_opened(&self.key, until);
                }
                (CircuitState::Closed, TransitionReason::ProbesSucceeded) => {
                    let trip = self.trip.lock().unwrap_or_else(|e| e.into_inner()).take();
                    self.mirror.publish_closed(&self.key, trip);
                }
                (CircuitState::Closed, TransitionReason::Forced) => {
                    let trip = self.mirror.breaker_trip(&self.key);
                    self.mirror.publish_closed(&self.key, trip);
                }
                _ => {}
            }
        }

        /// What the fleet says to a probe slot the breaker handed out.
        pub(crate) fn ask_probe(self: &Arc<Self>, core: &Arc<Core>) -> Probing {
            if self.closed_elsewhere() {
                return Probing::Closed;
            }
            let now = core.now_nanos();
            let denied = self.denied_until.load(Ordering::Acquire);
            if now < denied {
                return Probing::Wait(Duration::from_nanos(denied - now));
            }
            // A replica that took the lease and went away delays the others'
            // probe by at most one open duration.
            let lease = core.config.open_duration;
            Probing::Ask(ProbeAsk {
                answer: self.mirror.probe(&self.key, lease),
                link: self.clone(),
                core: core.clone(),
            })
        }

        /// What the fleet answered to a probe: go (this replica probes, or
        /// the store did not answer), or wait.
        fn answered(&self, core: &Core, probe: Probe) -> Result<(), Duration> {
            if let Probe::Denied(left) = probe {
                let wait = left.clamp(Duration::from_millis(1), ASK_AGAIN);
                let until = core.now_nanos().saturating_add(saturating_nanos(wait));
                self.denied_until.fetch_max(until, Ordering::AcqRel);
                return Err(wait);
            }
            let trip = self.mirror.breaker_trip(&self.key);
            *self.trip.lock().unwrap_or_else(|e| e.into_inner()) = trip;
            Ok(())
        }
    }

    /// The question to the fleet for a probe: `Ok` sends the probe, `Err`
    /// the time to wait (another replica probes).
    pub(crate) struct ProbeAsk {
        answer: Answer<Probe>,
        link: Arc<FleetLink>,
        core: Arc<Core>,
    }

    impl std::fmt::Debug for ProbeAsk {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ProbeAsk").finish_non_exhaustive()
        }
    }

    impl Future for ProbeAsk {
        type Output = Result<(), Duration>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.get_mut();
            let probe = ready!(Pin::new(&mut this.answer).poll(cx));
            Poll::Ready(this.link.answered(&this.core, probe))
        }
    }
}

#[cfg(not(feature = "fleet"))]
mod none {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::Probing;
    use crate::circuit_breaker::breaker::{Breaker, Change};
    use crate::circuit_breaker::core::Core;

    /// No fleet: no link is ever made.
    #[derive(Debug)]
    pub(crate) enum FleetLink {}

    impl FleetLink {
        pub(crate) fn of(_core: &Core, _key: &str) -> Option<Arc<FleetLink>> {
            None
        }

        pub(crate) fn learn(&self, _core: &Core, _breaker: &Breaker) -> Option<Change> {
            match *self {}
        }

        pub(crate) fn publish(&self, _core: &Core, _change: &Change, _open_until: u64) {
            match *self {}
        }

        pub(crate) fn closed_elsewhere(&self) -> bool {
            match *self {}
        }

        pub(crate) fn close(&self, _core: &Core, _breaker: &Breaker) -> Option<Change> {
            match *self {}
        }

        pub(crate) fn ask_probe(self: &Arc<Self>, _core: &Arc<Core>) -> Probing {
            match **self {}
        }
    }

    /// No fleet: no probe is ever asked for.
    #[derive(Debug)]
    pub(crate) enum ProbeAsk {}

    impl Future for ProbeAsk {
        type Output = Result<(), Duration>;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
            match *self.get_mut() {}
        }
    }
}
