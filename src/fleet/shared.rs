//! The state one mirror's handles and its background task share: the tables,
//! the changes waiting to be pushed, and the translation between the store's
//! clock and local instants.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::backend::{Backend, Change, Snapshot, Update};
use super::key::{Digest, Kind};
use super::notice::Health;
use super::rate::Pools;
use super::table::Table;

/// How a mirror talks to its store.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) poll_interval: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) lease_timeout: Duration,
    pub(crate) max_keys: usize,
    /// This replica's name in probe leases: random, never reused.
    pub(crate) replica: String,
}

/// A change waiting to be pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Hold back or open until this local instant (extend-only).
    Extend(Instant),
    /// Close the open whose store deadline is this token (0: none), and end
    /// this replica's probe lease.
    Close(u64),
}

pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    pub(crate) holds: Table,
    pub(crate) opens: Table,
    pub(crate) pools: Pools,
    pending: Mutex<HashMap<(Kind, Digest), Pending>>,
    /// Changes dropped because the queue was full.
    pub(crate) dropped: AtomicU64,
    /// Until when (nanoseconds after the epoch) calls decide locally
    /// without asking the store: a lease or probe request it did not
    /// answer in time starts such a quiet time, as long as the background
    /// task may need to find the store away.
    quiet_until: AtomicU64,
    pub(crate) wake: Arc<Notify>,
    pub(crate) health: Health,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) settings: Settings,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("holds", &self.holds)
            .field("opens", &self.opens)
            .field("health", &self.health)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Shared {
    pub(crate) fn new(backend: Arc<dyn Backend>, health: Health, settings: Settings) -> Shared {
        Shared {
            epoch: Instant::now(),
            holds: Table::new(settings.max_keys),
            opens: Table::new(settings.max_keys),
            pools: Pools::new(settings.max_keys),
            pending: Mutex::default(),
            dropped: AtomicU64::new(0),
            quiet_until: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            health,
            backend,
            settings,
        }
    }

    pub(crate) fn table(&self, kind: Kind) -> &Table {
        match kind {
            Kind::Hold => &self.holds,
            Kind::Open => &self.opens,
        }
    }

    /// Whether a call may ask the store now: it answers, and no request of
    /// a call went unanswered lately.
    pub(crate) fn may_ask(&self) -> bool {
        self.health.available()
            && self.quiet_until.load(Ordering::Relaxed) <= self.nanos(Instant::now())
    }

    /// A call's request went unanswered: the next calls decide locally for
    /// one poll interval and one call timeout (by then the background task
    /// knows whether the store is away).
    pub(crate) fn unanswered(&self) {
        let quiet = self.settings.poll_interval + self.settings.call_timeout;
        tracing::debug!(
            target: "tower_http_resilience::fleet",
            "a lease went unanswered: calls decide locally for {quiet:?}"
        );
        let until = self.nanos(Instant::now() + quiet);
        self.quiet_until.fetch_max(until, Ordering::Relaxed);
    }

    /// `at` as nanoseconds after the epoch; never 0, which means "none".
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        crate::util::saturating_nanos(at.saturating_duration_since(self.epoch)).max(1)
    }

    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        crate::util::instant_after(self.epoch, Duration::from_nanos(nanos))
    }

    /// A store deadline as local nanoseconds, given the store's `now` and the
    /// local instant its answer arrived (late, never early: the answer left
    /// the store before it arrived). `None` when already past.
    fn local(&self, until_ms: u64, now_ms: u64, received: Instant) -> Option<u64> {
        let left = until_ms.checked_sub(now_ms).filter(|&d| d > 0)?;
        Some(self.nanos(crate::util::instant_after(
            received,
            Duration::from_millis(left),
        )))
    }

    fn queue(&self) -> MutexGuard<'_, HashMap<(Kind, Digest), Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a change for the background task; never waits. A full queue
    /// drops the change (counted).
    pub(crate) fn enqueue(&self, kind: Kind, digest: Digest, change: Pending) {
        {
            let mut q = self.queue();
            let limit = self.settings.max_keys.saturating_mul(2);
            if q.len() >= limit && !q.contains_key(&(kind, digest)) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let merged = match (q.get(&(kind, digest)), change) {
                (Some(Pending::Extend(a)), Pending::Extend(b)) => Pending::Extend((*a).max(b)),
                (_, newer) => newer,
            };
            q.insert((kind, digest), merged);
        }
        self.wake.notify_one();
    }

    /// Takes every queued change.
    pub(crate) fn drain(&self) -> Vec<((Kind, Digest), Pending)> {
        self.queue().drain().collect()
    }

    /// Puts back changes that could not be pushed, unless a newer change for
    /// the same entry arrived meanwhile.
    pub(crate) fn requeue(&self, changes: impl IntoIterator<Item = ((Kind, Digest), Pending)>) {
        let mut q = self.queue();
        for (k, v) in changes {
            q.entry(k).or_insert(v);
        }
    }

    /// The store change for a queued one; `None` when its deadline passed.
    pub(crate) fn change(&self, kind: Kind, digest: Digest, pending: Pending) -> Option<Change> {
        match pending {
            Pending::Close(token) => Some(Change::Close { digest, token }),
            Pending::Extend(until) => {
                let left = until.saturating_duration_since(Instant::now());
                // Whole milliseconds, rounded up: a hold never ends early.
                let ms = crate::util::saturating_millis(left + Duration::from_nanos(999_999));
                (ms > 0).then_some(match kind {
                    Kind::Hold => Change::Hold {
                        digest,
                        wait_ms: ms,
                    },
                    Kind::Open => Change::Open {
                        digest,
                        open_ms: ms,
                    },
                })
            }
        }
    }

    /// Applies what the store said.
    pub(crate) fn apply(&self, update: Update, received: Instant) {
        match update {
            Update::Until {
                kind,
                digest,
                until_ms,
                now_ms,
            } => self.apply_until(kind, digest, until_ms, now_ms, received),
            Update::Closed { digest, token } => {
                if let Some(slot) = self.opens.by_digest(digest, false) {
                    slot.count_close();
                    if token != 0 && slot.token() == token {
                        self.opens.clear(&slot);
                    }
                }
            }
            Update::Unchanged | Update::Resync => {}
        }
    }

    fn apply_until(
        &self,
        kind: Kind,
        digest: Digest,
        until_ms: u64,
        now_ms: u64,
        received: Instant,
    ) {
        let Some(local) = self.local(until_ms, now_ms, received) else {
            return;
        };
        let table = self.table(kind);
        let slot = table.by_digest(digest, true).expect("made on demand");
        if slot.token() == until_ms {
            return;
        }
        match kind {
            // Holds only ever extend, here as in the store.
            Kind::Hold => table.raise(&slot, local, until_ms),
            // An open with another token is another trip: take it as it is.
            Kind::Open => table.replace(&slot, local, until_ms),
        }
    }

    /// Applies a poll: every live entry, and, when the poll saw all of them,
    /// the end of every confirmed open it no longer lists (closed or expired
    /// elsewhere). Holds are never cut short: a store that lost them (a
    /// restart) does not shorten what the upstream said.
    pub(crate) fn apply_snapshot(&self, snap: &Snapshot, received: Instant) {
        for &(kind, digest, until_ms) in &snap.entries {
            self.apply_until(kind, digest, until_ms, snap.now_ms, received);
        }
        if snap.complete {
            for slot in self.opens.confirmed() {
                let listed = snap
                    .entries
                    .iter()
                    .any(|&(k, d, u)| k == Kind::Open && d == slot.digest && u == slot.token());
                if !listed {
                    self.opens.clear(&slot);
                }
            }
        }
    }

    /// Forgets deadlines that passed.
    pub(crate) fn sweep(&self) {
        let now = self.nanos(Instant::now());
        self.holds.sweep(now);
        self.opens.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::memory::MemoryStore;
    use crate::fleet::notice::Health;

    fn shared() -> Shared {
        let settings = Settings {
            poll_interval: Duration::from_millis(500),
            call_timeout: Duration::from_millis(250),
            lease_timeout: Duration::from_millis(20),
            max_keys: 64,
            replica: "r".into(),
        };
        Shared::new(
            Arc::new(MemoryStore::new().backend("t")),
            Health::new(None),
            settings,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn store_deadlines_become_local_instants() {
        let s = shared();
        let d = Digest::of("k");
        let now = Instant::now();
        s.apply(
            Update::Until {
                kind: Kind::Hold,
                digest: d,
                until_ms: 10_500,
                now_ms: 10_000,
            },
            now,
        );
        let until = s.holds.until("k").map(|n| s.instant(n));
        assert_eq!(until, Some(now + Duration::from_millis(500)));
        // A past deadline is ignored.
        s.apply(
            Update::Until {
                kind: Kind::Open,
                digest: d,
                until_ms: 9,
                now_ms: 10,
            },
            now,
        );
        assert_eq!(s.opens.until("k"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_changes_merge_and_requeue_keeps_newer() {
        let s = shared();
        let d = Digest::of("k");
        let t = Instant::now();
        s.enqueue(Kind::Hold, d, Pending::Extend(t + Duration::from_secs(5)));
        s.enqueue(Kind::Hold, d, Pending::Extend(t + Duration::from_secs(1)));
        let got = s.drain();
        assert_eq!(
            got,
            [((Kind::Hold, d), Pending::Extend(t + Duration::from_secs(5)))]
        );
        s.enqueue(Kind::Open, d, Pending::Close(7));
        s.requeue([((Kind::Open, d), Pending::Extend(t))]);
        assert_eq!(s.drain(), [((Kind::Open, d), Pending::Close(7))]);
        assert_eq!(
            s.change(
                Kind::Hold,
                d,
                Pending::Extend(t + Duration::from_micros(1500))
            ),
            Some(Change::Hold {
                digest: d,
                wait_ms: 2
            }),
            "rounded up"
        );
        assert_eq!(
            s.change(Kind::Hold, d, Pending::Extend(t)),
            None,
            "already past"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn complete_polls_end_confirmed_opens_only() {
        let s = shared();
        let (a, b) = (Digest::of("a"), Digest::of("b"));
        let now = Instant::now();
        s.apply(
            Update::Until {
                kind: Kind::Open,
                digest: a,
                until_ms: 2_000,
                now_ms: 1_000,
            },
            now,
        );
        let local = s.opens.slot("b");
        s.opens
            .raise(&local, s.nanos(now + Duration::from_secs(1)), 0);
        let partial = Snapshot {
            now_ms: 1_000,
            entries: vec![],
            complete: false,
        };
        s.apply_snapshot(&partial, now);
        assert!(
            s.opens.until("a").is_some(),
            "an incomplete poll proves nothing"
        );
        let full = Snapshot {
            now_ms: 1_000,
            entries: vec![],
            complete: true,
        };
        s.apply_snapshot(&full, now);
        assert_eq!(s.opens.until("a"), None, "closed elsewhere");
        assert!(s.opens.until("b").is_some(), "not yet confirmed: kept");
        let _ = b;
    }
}
