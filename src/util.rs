//! Small helpers every layer shares: saturating time arithmetic, a timer
//! armed once and reset in place, and cutting text at a character boundary.

// Each helper serves several features; a build with few of them leaves
// some idle.
#![cfg_attr(not(feature = "full"), allow(dead_code, unused_imports))]

use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tokio::time::{sleep_until, Sleep};

/// The inner service and the request of a call not sent yet: held (boxed)
/// by a future that waits for the inner service, or for something else,
/// before the call. Boxed because those paths are rare and inline they
/// would make every call's future larger.
pub(crate) struct Deferred<S, R> {
    service: S,
    request: Option<R>,
}

impl<S, R> Deferred<S, R> {
    pub(crate) fn boxed(service: S, request: Option<R>) -> Box<Self> {
        Box::new(Deferred { service, request })
    }

    /// Calls the inner service once it is ready; `Err` with its error.
    pub(crate) fn poll_call(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<S::Future, S::Error>>
    where
        S: tower_service::Service<R>,
    {
        std::task::ready!(self.service.poll_ready(cx))?;
        let request = self.request.take().expect(POLLED_AFTER_READY);
        std::task::Poll::Ready(Ok(self.service.call(request)))
    }
}

/// The panic of a future polled after it completed.
pub(crate) const POLLED_AFTER_READY: &str = "ResponseFuture polled after completion";

/// About thirty years: the stand-in for "never" where an `Instant` is needed.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds, saturating at `u64::MAX` (every build:
/// a gRPC error's `grpc-retry-pushback-ms` needs it).
pub(crate) fn saturating_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// 32-bit FNV-1a: a fixed hash, the same in every run, to show a key in
/// logs without showing it.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// 64-bit FNV-1a: a fixed hash, the same in every run and on every
/// replica, to name a secret (a credential) without keeping it.
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How a bounded registry of `max_keys` keys is cut into shards: the
/// largest power of two that is at most both `max_keys` and `max_shards`,
/// and the keys each shard holds, so that `shards * per_shard <= max_keys`.
pub(crate) fn shard_layout(max_keys: usize, max_shards: usize) -> (usize, usize) {
    let shards = 1usize << max_keys.min(max_shards).max(1).ilog2();
    (shards, max_keys / shards)
}

/// Callbacks registered on shared state, called outside the lock: a call
/// copies them out first, so that a callback may register another.
pub(crate) struct Listeners<T: ?Sized>(std::sync::RwLock<Vec<std::sync::Arc<T>>>);

impl<T: ?Sized> Listeners<T> {
    pub(crate) fn new() -> Self {
        Listeners(std::sync::RwLock::new(Vec::new()))
    }

    /// The callbacks now, copied out of the lock.
    pub(crate) fn snapshot(&self) -> Vec<std::sync::Arc<T>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn add(&self, listener: std::sync::Arc<T>) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }
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
pub(crate) fn arm(slot: Pin<&mut Option<Sleep>>, at: Instant) -> Pin<&mut Sleep> {
    set(slot, at, |deadline| deadline != at)
}

/// Sets a timer to fire no later than `at`: made on first use, moved in
/// place when it would fire after `at`, and left as it is when it fires
/// before. A deadline that keeps moving later (an idle clock) then costs no
/// timer work until the timer fires early, when the caller resets it.
pub(crate) fn arm_no_later(slot: Pin<&mut Option<Sleep>>, at: Instant) -> Pin<&mut Sleep> {
    set(slot, at, |deadline| deadline > at)
}

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

/// A hasher for keys that are already hashes (a registry's `u64` digests):
/// the digest is the hash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
