//! A configured rate per key: the generic cell rate algorithm (GCRA).
//!
//! The state of a key's rate is one number, its theoretical arrival time
//! (TAT): the instant the next call would be due if calls went out at the
//! steady pace. A call at `t` conforms when `t >= TAT - tolerance`; sending
//! it moves the TAT to `max(TAT, t) + interval`. A call that does not
//! conform yet is given the first instant at which it will, and the TAT is
//! moved as if it had gone out then: the slot is its own.

use std::time::Duration;

/// A rate as a request extension: the most requests per minute sent for
/// the request's key, for this call, in place of the layer's
/// [`rpm`](super::PacingConfig::rpm) (a gateway puts the rate of the
/// upstream a call is sent to). `Rpm(0)` means no rate.
///
/// ```
/// use tower_http_resilience::pacing::Rpm;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Rpm(500));
/// assert_eq!(req.extensions().get::<Rpm>(), Some(&Rpm(500)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rpm(pub u32);

/// The most calls let out at once by a rate.
const MAX_BURST: u64 = 10;

const MINUTE_NANOS: u64 = 60_000_000_000;

/// A rate in the form the GCRA uses: nanoseconds between calls at the
/// steady pace, and how far ahead of it a call may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    interval: u64,
    tolerance: u64,
    rpm: u32,
}

impl Gcra {
    /// The GCRA of `rpm` requests per minute (`None` for 0): a burst of
    /// `rpm / 60` calls (1 to 10, never more than `rpm`), then one call
    /// every `60 s / (rpm - burst + 1)`, so that a burst and the steady
    /// pace after it never put more than `rpm` calls in a 60-second window.
    pub(crate) fn per_minute(per_minute: u32) -> Option<Gcra> {
        let rpm = u64::from(per_minute);
        if rpm == 0 {
            return None;
        }
        let burst = (rpm / 60).clamp(1, MAX_BURST);
        let interval = MINUTE_NANOS.div_ceil(rpm - burst + 1);
        Some(Gcra {
            interval,
            tolerance: (burst - 1) * interval,
            rpm: per_minute,
        })
    }

    /// The requests per minute this GCRA keeps to.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub(crate) fn rpm(&self) -> u32 {
        self.rpm
    }

    /// The instant (nanoseconds) at or after `now` at which a call
    /// conforms, given the TAT `tat`, and the TAT once it has gone out.
    pub(crate) fn schedule(&self, tat: u64, now: u64) -> (u64, u64) {
        let at = now.max(tat.saturating_sub(self.tolerance));
        (at, tat.max(at).saturating_add(self.interval))
    }

    /// The time between calls at the steady pace.
    #[cfg(test)]
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }
}

/// The rate of a call: the request's [`Rpm`], else the layer's.
pub(crate) fn rate_of(extensions: &http::Extensions, layer: Option<Gcra>) -> Option<Gcra> {
    match extensions.get::<Rpm>() {
        Some(Rpm(rpm)) => Gcra::per_minute(*rpm),
        None => layer,
    }
}

/// How long a call scheduled at `at` waits from `now`.
pub(crate) fn wait_until(at: u64, now: u64) -> Duration {
    Duration::from_nanos(at.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    /// Sends at the instants the GCRA gives for calls arriving at `arrivals`
    /// (in order), all accepted whatever their wait.
    fn sends(gcra: Gcra, arrivals: &[u64]) -> Vec<u64> {
        let mut tat = 0;
        arrivals
            .iter()
            .map(|&now| {
                let (at, next) = gcra.schedule(tat, now);
                tat = next;
                at
            })
            .collect()
    }

    #[test]
    fn bursts_and_intervals() {
        let g = Gcra::per_minute(3).unwrap();
        assert_eq!(g.interval(), Duration::from_secs(20));
        assert_eq!(sends(g, &[0, 0, 0, 0]), [0, 20 * SEC, 40 * SEC, 60 * SEC]);
        let g = Gcra::per_minute(600).unwrap();
        // A burst of 10 goes out at once, then one every 60 s / 591.
        let at = sends(g, &[SEC; 12]);
        assert!(at[..10].iter().all(|&t| t == SEC));
        assert_eq!(at[10], SEC + MINUTE_NANOS.div_ceil(591));
        assert_eq!(Gcra::per_minute(0), None);
        let g = Gcra::per_minute(u32::MAX).unwrap();
        assert_eq!(sends(g, &[5])[0], 5);
    }

    #[test]
    fn an_idle_key_starts_a_new_burst() {
        let g = Gcra::per_minute(120).unwrap(); // burst 2, one every 60/119 s
        let at = sends(g, &[0, 0, 0, 100 * SEC, 100 * SEC, 100 * SEC]);
        assert_eq!(&at[..2], &[0, 0]);
        assert_eq!(&at[3..5], &[100 * SEC, 100 * SEC]);
        assert!(at[5] > 100 * SEC);
    }

    proptest! {
        /// Whatever the arrivals, no 60-second window holds more than
        /// `rpm` sends.
        #[test]
        fn no_minute_sends_more_than_the_rate(
            rpm in 1u32..1200,
            mut arrivals in proptest::collection::vec(0u64..300 * SEC, 1..400),
        ) {
            arrivals.sort_unstable();
            let g = Gcra::per_minute(rpm).unwrap();
            let at = sends(g, &arrivals);
            prop_assert!(at.windows(2).all(|w| w[0] <= w[1]));
            let rpm = rpm as usize;
            for (i, &start) in at.iter().enumerate() {
                let in_window = at[i..].iter().take_while(|&&t| t < start + MINUTE_NANOS).count();
                prop_assert!(in_window <= rpm, "{} sends in a minute at rpm {}", in_window, rpm);
            }
        }
    }
}
