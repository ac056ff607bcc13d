//! A pacing slot's link to the fleet: what one key reads from and publishes
//! to a [`FleetMirror`](crate::fleet::FleetMirror).
//!
//! - **Holds**: a call reads the later of the key's own hold and the
//!   fleet's, through the mirror entry kept in the slot (one atomic load
//!   while the fleet holds nothing for the key). A hold this replica learns
//!   from a response is published (extend-only); a hold learnt from the
//!   fleet is not published again.
//! - **Rates**: a call with a rate takes a cell of the fleet's rate for the
//!   key ([`FleetMirror::acquire`](crate::fleet::FleetMirror::acquire)):
//!   at once from cells leased ahead, else within the mirror's lease
//!   timeout. A store that does not answer leaves the call to the key's own
//!   rate, as without a fleet.
//!
//! The fleet's rate keeps the sliding-minute promise of the local one,
//! with a second of margin for the time calls take to reach the upstream:
//! a burst of `rpm / 20` (at least 1) ahead of a steady `rpm - burst` every
//! 61 seconds, so that no 61 seconds of sending hold more than `rpm` calls
//! fleet-wide (for `rpm` of 2 or more), and no minute of arrivals either
//! while calls take less than a second to arrive.
//!
//! Without the `fleet` feature the link is a type with no values: every
//! slot's link is `None` and nothing here runs.

#[cfg(feature = "fleet")]
pub(crate) use link::{FleetLink, Lease};
#[cfg(not(feature = "fleet"))]
pub(crate) use none::{FleetLink, Lease};

/// What the fleet's rate says to a call.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub(crate) enum Turn {
    /// A cell: the call goes.
    Go,
    /// No cell before this time has passed; then ask again.
    Wait(std::time::Duration),
    /// The store did not answer: the key's own rate decides.
    Local,
    /// Ask the store, then decide (never the answer of a [`Lease`]).
    Ask(Lease),
}

#[cfg(feature = "fleet")]
mod link {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::Turn;
    use crate::fleet::{Answer, FleetEntry, FleetMirror, Permit, Rate};
    use crate::pacing::core::Core;
    use crate::pacing::rate::Gcra;

    /// What one pacing slot keeps of the fleet.
    #[derive(Debug)]
    pub(crate) struct FleetLink {
        mirror: FleetMirror,
        entry: FleetEntry,
    }

    impl FleetLink {
        /// The link of the slot named `key`, when its layer shares a fleet.
        pub(crate) fn of(core: &Core, key: &str) -> Option<FleetLink> {
            let mirror = core.fleet.get()?;
            Some(FleetLink {
                entry: mirror.hold_entry(key),
                mirror: mirror.clone(),
            })
        }

        /// The fleet's hold of the key (nanoseconds on the layer's clock;
        /// 0: none). One atomic load when the fleet holds nothing.
        #[inline]
        pub(crate) fn held_until(&self, core: &Core) -> u64 {
            self.entry.until().map_or(0, |at| core.nanos_at(at))
        }

        /// Publishes a hold this replica learnt (extend-only).
        pub(crate) fn publish(&self, core: &Core, key: &str, until: u64) {
            self.mirror.publish_hold(key, core.instant(until));
        }

        /// Whether a call that waited for the rate asks the fleet again
        /// (the fleet's rate reserves nothing for a waiting call).
        pub(crate) fn leases(&self) -> bool {
            self.mirror.is_available()
        }

        /// A cell of the fleet's rate for a call: at once from the cells
        /// leased ahead, or a question to the store.
        pub(crate) fn rate(&self, key: &str, gcra: Gcra) -> Turn {
            let rate = fleet_rate(gcra.rpm());
            match self.mirror.acquire(key, rate).known() {
                Ok(permit) => turn(permit),
                Err(answer) => Turn::Ask(Lease { answer }),
            }
        }
    }

    /// The fleet's rate for `rpm` requests a minute (see the module docs).
    fn fleet_rate(rpm: u32) -> Rate {
        let burst = (rpm / 20).max(1);
        let steady = rpm.saturating_sub(burst).max(1);
        Rate::new(steady, MINUTE_AND_MARGIN).burst(burst)
    }

    /// A minute, and a second for calls to reach the upstream.
    const MINUTE_AND_MARGIN: Duration = Duration::from_secs(61);

    /// What the fleet's answer means for a call.
    fn turn(permit: Permit) -> Turn {
        match permit {
            Permit::Granted => Turn::Go,
            Permit::RetryAfter(wait) => Turn::Wait(wait.max(Duration::from_nanos(1))),
            _ => Turn::Local,
        }
    }

    /// A call's question to the store for a cell of the fleet's rate.
    pub(crate) struct Lease {
        answer: Answer<Permit>,
    }

    impl std::fmt::Debug for Lease {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Lease").finish_non_exhaustive()
        }
    }

    /// A question is only ever itself.
    impl PartialEq for Lease {
        fn eq(&self, other: &Lease) -> bool {
            std::ptr::eq(self, other)
        }
    }

    impl Eq for Lease {}

    impl Future for Lease {
        type Output = Turn;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn> {
            Pin::new(&mut self.get_mut().answer).poll(cx).map(turn)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The fleet's bound over any window of `period` (61 s) of
        /// sending: `limit + burst` calls (a cell every `period / limit`,
        /// `burst` of them ahead); its steady pace at least 0.9 of `rpm`.
        #[test]
        fn no_61_seconds_hold_more_than_the_rate() {
            for rpm in [2, 3, 10, 20, 60, 600, 6_000, u32::MAX] {
                let rate = fleet_rate(rpm);
                assert_eq!(rate.period(), Duration::from_secs(61));
                let bound = u64::from(rate.limit()) + u64::from((rpm / 20).max(1));
                assert!(bound <= u64::from(rpm), "{rpm}: {bound}");
                let per_minute = f64::from(rate.limit()) * 60.0 / 61.0;
                assert!(
                    per_minute >= 0.9 * f64::from(rpm) || rpm < 20,
                    "{rpm}: {per_minute}"
                );
            }
        }

        #[test]
        fn answers_become_turns() {
            assert_eq!(turn(Permit::Granted), Turn::Go);
            let wait = Duration::from_millis(10);
            assert_eq!(turn(Permit::RetryAfter(wait)), Turn::Wait(wait));
            assert_eq!(
                turn(Permit::RetryAfter(Duration::ZERO)),
                Turn::Wait(Duration::from_nanos(1))
            );
            assert_eq!(turn(Permit::Unavailable), Turn::Local);
        }
    }
}

#[cfg(not(feature = "fleet"))]
mod none {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::Turn;
    use crate::pacing::core::Core;
    use crate::pacing::rate::Gcra;

    /// No fleet: no link is ever made.
    #[derive(Debug)]
    pub(crate) enum FleetLink {}

    impl FleetLink {
        pub(crate) fn of(_core: &Core, _key: &str) -> Option<FleetLink> {
            None
        }

        pub(crate) fn held_until(&self, _core: &Core) -> u64 {
            match *self {}
        }

        pub(crate) fn publish(&self, _core: &Core, _key: &str, _until: u64) {
            match *self {}
        }

        pub(crate) fn leases(&self) -> bool {
            match *self {}
        }

        pub(crate) fn rate(&self, _key: &str, _gcra: Gcra) -> Turn {
            match *self {}
        }
    }

    /// No fleet: no lease is ever asked for.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Lease {}

    impl Future for Lease {
        type Output = Turn;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Turn> {
            match *self.get_mut() {}
        }
    }
}
