//! Small helpers every layer shares: saturating time arithmetic, a timer
//! armed once and reset in place, and cutting text at a character boundary.

#[cfg(any(feature = "retry", feature = "timeout"))]
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
#[cfg(any(feature = "retry", feature = "timeout"))]
use tokio::time::{sleep_until, Sleep};

/// About thirty years: the stand-in for "never" where an `Instant` is needed.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
#[cfg(any(feature = "retry", feature = "circuit-breaker"))]
pub(crate) fn saturating_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `instant + d`, or about thirty years after `instant` when that cannot be
/// represented.
pub(crate) fn instant_after(instant: Instant, d: Duration) -> Instant {
    instant
        .checked_add(d)
        .or_else(|| instant.checked_add(FAR))
        .unwrap_or(instant)
}

/// Sets a timer to fire at `at`: made on first use, reset in place after that
/// (never reallocated), and returned ready to poll.
#[cfg(any(feature = "retry", feature = "timeout"))]
pub(crate) fn arm(slot: Pin<&mut Option<Sleep>>, at: Instant) -> Pin<&mut Sleep> {
    set(slot, at, |deadline| deadline != at)
}

/// Sets a timer to fire no later than `at`: made on first use, moved in
/// place when it would fire after `at`, and left as it is when it fires
/// before. A deadline that keeps moving later (an idle clock) then costs no
/// timer work until the timer fires early, when the caller resets it.
#[cfg(feature = "timeout")]
pub(crate) fn arm_no_later(slot: Pin<&mut Option<Sleep>>, at: Instant) -> Pin<&mut Sleep> {
    set(slot, at, |deadline| deadline > at)
}

#[cfg(any(feature = "retry", feature = "timeout"))]
fn set(
    mut slot: Pin<&mut Option<Sleep>>,
    at: Instant,
    reset: impl FnOnce(Instant) -> bool,
) -> Pin<&mut Sleep> {
    match slot.as_mut().as_pin_mut() {
        Some(sleep) => {
            if reset(sleep.deadline()) {
                sleep.reset(at);
            }
        }
        None => slot.set(Some(sleep_until(at))),
    }
    slot.as_pin_mut().expect("the timer was just armed")
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a
/// character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(all(test, feature = "full"))]
mod tests {
    use super::*;

    #[test]
    fn saturating_conversions() {
        assert_eq!(saturating_nanos(Duration::from_secs(1)), 1_000_000_000);
        assert_eq!(saturating_nanos(Duration::MAX), u64::MAX);
        assert_eq!(saturating_millis(Duration::from_micros(2500)), 2);
        assert_eq!(saturating_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn instant_after_never_panics() {
        let now = Instant::now();
        assert_eq!(
            instant_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(instant_after(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn truncate_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("€", 2), "");
    }

    #[tokio::test(start_paused = true)]
    async fn arm_reuses_the_timer() {
        let slot: Option<Sleep> = None;
        let mut slot = std::pin::pin!(slot);
        let at = Instant::now() + Duration::from_secs(5);
        assert_eq!(arm(slot.as_mut(), at).deadline(), at);
        let later = at + Duration::from_secs(5);
        assert_eq!(arm(slot.as_mut(), later).deadline(), later);
        arm(slot.as_mut(), later).await;
        assert_eq!(Instant::now(), later);
    }

    #[tokio::test(start_paused = true)]
    async fn arm_no_later_only_moves_the_timer_earlier() {
        let slot: Option<Sleep> = None;
        let mut slot = std::pin::pin!(slot);
        let at = Instant::now() + Duration::from_secs(5);
        assert_eq!(arm_no_later(slot.as_mut(), at).deadline(), at);
        let later = at + Duration::from_secs(5);
        assert_eq!(arm_no_later(slot.as_mut(), later).deadline(), at, "kept");
        let earlier = at - Duration::from_secs(1);
        assert_eq!(arm_no_later(slot.as_mut(), earlier).deadline(), earlier);
    }
}
