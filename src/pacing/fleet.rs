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
//! The fleet's rate keeps the sliding-minute promise of the local one: a
//! burst of `rpm / 20` (at least 1) ahead of a steady `rpm - burst` a
//! minute, so that no 60 seconds hold more than `rpm` calls fleet-wide
//! (for `rpm` of 2 or more).
//!
//! Without the `fleet` feature the link is a type with no values: every
//! slot's link is `None` and nothing here runs.

#[cfg(feature = "fleet")]
pub(crate) use link::{FleetLink, Lease, LeaseAnswer};
#[cfg(not(feature = "fleet"))]
pub(crate) use none::{FleetLink, Lease, LeaseAnswer};

#[cfg(feature = "fleet")]
mod link {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use crate::fleet::{Answer, FleetEntry, FleetMirror, Permit, Rate};
    use crate::pacing::core::Core;
    use crate::pacing::rate::Gcra;
    use crate::pacing::slot::Admission;
    use crate::pacing::state::HoldCause;
    use crate::util::saturating_nanos;

    /// What one pacing slot keeps of the fleet.
    pub(crate) struct FleetLink {
        mirror: FleetMirror,
        entry: FleetEntry,
    }

    impl std::fmt::Debug for FleetLink {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FleetLink")
                .field("entry", &self.entry)
                .finish_non_exhaustive()
        }
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

        /// A cell of the fleet's rate for a call at `now` that may wait
        /// until `latest`: the admission, the question to the store, or
        /// `None` when the store is away (the key's own rate decides).
        pub(crate) fn rate(
            &self,
            key: &str,
            gcra: Gcra,
            now: u64,
            latest: u64,
        ) -> Option<Admission> {
            let rate = fleet_rate(gcra.rpm());
            match self.mirror.acquire(key, rate).known() {
                Ok(permit) => permitted(permit, now, latest),
                Err(answer) => Some(Admission::Ask(Lease { answer })),
            }
        }
    }

    /// The fleet's rate for `rpm` requests a minute (see the module docs).
    fn fleet_rate(rpm: u32) -> Rate {
        let burst = (rpm / 20).max(1);
        Rate::per_minute(rpm.saturating_sub(burst).max(1)).burst(burst)
    }

    /// What a fleet's answer means for a call at `now` that may wait until
    /// `latest`; `None` when the store did not answer.
    pub(crate) fn permitted(permit: Permit, now: u64, latest: u64) -> Option<Admission> {
        let wait = match permit {
            Permit::Granted => return Some(Admission::Go),
            Permit::RetryAfter(wait) => wait,
            _ => return None,
        };
        let at = now.saturating_add(saturating_nanos(wait.max(Duration::from_nanos(1))));
        let cause = HoldCause::Rate;
        Some(if at <= latest {
            Admission::Wait { at, cause }
        } else {
            Admission::Refuse { at, cause }
        })
    }

    /// What the store answers a [`Lease`].
    pub(crate) type LeaseAnswer = Permit;

    /// A call's question to the store for a cell of the fleet's rate.
    pub(crate) struct Lease {
        answer: Answer<Permit>,
    }

    impl Lease {
        /// What the answer means for a call at `now` that may wait until
        /// `latest`; `None` when the store did not answer.
        pub(crate) fn admission(permit: Permit, now: u64, latest: u64) -> Option<Admission> {
            permitted(permit, now, latest)
        }
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
        type Output = Permit;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
            Pin::new(&mut self.get_mut().answer).poll(cx)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The fleet's bound over any 60 s: `limit + burst` calls (a cell
        /// every `60 s / limit`, `burst` of them ahead).
        #[test]
        fn no_minute_holds_more_than_the_rate() {
            for rpm in [2, 3, 10, 60, 600, 6_000, u32::MAX] {
                let rate = fleet_rate(rpm);
                let bound = u64::from(rate.limit()) + u64::from(rpm / 20).max(1);
                assert!(bound <= u64::from(rpm), "{rpm}: {bound}");
                assert!(
                    rate.limit() as f64 >= 0.9 * f64::from(rpm) || rpm < 20,
                    "{rpm}"
                );
            }
        }

        #[test]
        fn answers_become_admissions() {
            assert_eq!(permitted(Permit::Granted, 5, 5), Some(Admission::Go));
            let wait = Permit::RetryAfter(Duration::from_nanos(10));
            let cause = HoldCause::Rate;
            assert_eq!(
                permitted(wait, 5, 15),
                Some(Admission::Wait { at: 15, cause })
            );
            assert_eq!(
                permitted(wait, 5, 14),
                Some(Admission::Refuse { at: 15, cause })
            );
            assert_eq!(permitted(Permit::Unavailable, 5, 5), None);
        }
    }
}

#[cfg(not(feature = "fleet"))]
mod none {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use crate::pacing::core::Core;
    use crate::pacing::rate::Gcra;
    use crate::pacing::slot::Admission;

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

        pub(crate) fn rate(
            &self,
            _key: &str,
            _gcra: Gcra,
            _now: u64,
            _latest: u64,
        ) -> Option<Admission> {
            match *self {}
        }
    }

    /// No fleet: no lease is ever asked for.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Lease {}

    impl Future for Lease {
        type Output = LeaseAnswer;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<LeaseAnswer> {
            match *self.get_mut() {}
        }
    }

    /// The answer no lease ever gives.
    #[derive(Debug)]
    pub(crate) enum LeaseAnswer {}

    impl Lease {
        pub(crate) fn admission(answer: LeaseAnswer, _now: u64, _latest: u64) -> Option<Admission> {
            match answer {}
        }
    }
}
