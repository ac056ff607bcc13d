//! The local mirror of fleet state: what the breaker and the pacing layer
//! read on every call, and where they publish what they learnt.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, Instant};

use super::answer::Answer;
use super::backend::{LeaseGrant, ProbeGrant};
use super::entry::FleetEntry;
use super::key::Kind;
use super::rate::{Pool, Rate, Taken};
use super::shared::{Pending, Shared};

/// One replica's view of the state its fleet shares: keys held back until an
/// instant (an upstream's rate limit), breakers opened until an instant,
/// one fleet-wide probe per open breaker, and fleet-wide rates.
///
/// Reads ([`held_until`](Self::held_until),
/// [`breaker_open_until`](Self::breaker_open_until)) never wait: one atomic
/// load while nothing is held anywhere, else a hash, a shared lock and one
/// atomic load. Publishing never waits either: the change is applied to the
/// mirror at once and queued for a background task, which pushes it to the
/// store, listens to the other replicas' changes and polls the store every
/// [`poll_interval`](super::FleetBuilder::poll_interval). When the store is
/// down or slow, the mirror goes on with what this replica knows, says so
/// once (see [`FleetNotice`](super::FleetNotice)) and catches up within one
/// poll interval after the store is back.
///
/// Cloning is cheap and shares the mirror. The background task ends within
/// one poll interval after the last clone is dropped.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let mirror = FleetMirror::builder("gateway").memory(&store).unwrap();
/// assert_eq!(mirror.held_until("sk-key-1"), None);
///
/// let until = Instant::now() + Duration::from_secs(30);
/// mirror.publish_hold("sk-key-1", until);
/// assert_eq!(mirror.held_until("sk-key-1"), Some(until));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct FleetMirror {
    pub(crate) shared: Arc<Shared>,
}

/// One fleet-wide open of one breaker, as the mirror knows it: its deadline
/// and the store's token for it, which [`FleetMirror::publish_closed`] needs
/// so that it closes this open and never a newer one.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore, Probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mirror = FleetMirror::builder("docs").memory(&MemoryStore::new()).unwrap();
/// mirror.publish_opened("gpt-4o", Instant::now() + Duration::from_secs(30));
/// let trip = mirror.breaker_trip("gpt-4o").unwrap();
/// // … the open time passes, this replica sends the probe, it succeeds:
/// mirror.publish_closed("gpt-4o", Some(trip));
/// assert_eq!(mirror.breaker_open_until("gpt-4o"), None);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    until: Instant,
    token: u64,
}

impl Trip {
    /// The instant the breaker may let a probe through.
    pub fn until(&self) -> Instant {
        self.until
    }
}

/// The answer to [`FleetMirror::probe`].
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore, Probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let a = FleetMirror::builder("docs").memory(&store).unwrap();
/// let b = FleetMirror::builder("docs").memory(&store).unwrap();
/// while !(a.is_available() && b.is_available()) {
///     tokio::task::yield_now().await;
/// }
/// assert_eq!(a.probe("gpt-4o", Duration::from_secs(5)).await, Probe::Granted);
/// assert!(matches!(b.probe("gpt-4o", Duration::from_secs(5)).await, Probe::Denied(_)));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// This replica sends the fleet's probe.
    Granted,
    /// Another replica sends it; its lease ends within this time.
    Denied(Duration),
    /// The store did not answer in time: decide locally.
    Unavailable,
}

/// The answer to [`FleetMirror::acquire`].
///
/// ```
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore, Permit, Rate};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mirror = FleetMirror::builder("docs").memory(&MemoryStore::new()).unwrap();
/// let rate = Rate::per_minute(60).burst(2);
/// while !mirror.is_available() {
///     tokio::task::yield_now().await;
/// }
/// assert_eq!(mirror.acquire("sk-key-1", rate).await, Permit::Granted);
/// match mirror.acquire("sk-key-1", rate).await {
///     Permit::Granted => { /* send */ }
///     Permit::RetryAfter(wait) => { /* wait, or answer 429 with retry-after */ let _ = wait; }
///     Permit::Unavailable => { /* a local limiter decides */ }
///     _ => {}
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permit {
    /// One call may go.
    Granted,
    /// The fleet has used the rate: no call may go before this time has
    /// passed.
    RetryAfter(Duration),
    /// The store did not answer in time: decide locally (for example with a
    /// local limiter at the rate divided by the number of replicas).
    Unavailable,
}

impl FleetMirror {
    /// The instant until which the fleet holds `key` back, if one is known.
    /// It may already have passed; compare it with the current instant.
    #[inline]
    pub fn held_until(&self, key: &str) -> Option<Instant> {
        self.shared.holds.until(key).map(|n| self.shared.instant(n))
    }

    /// The instant until which the fleet keeps the breaker of `key` open, if
    /// one is known. It may already have passed.
    #[inline]
    pub fn breaker_open_until(&self, key: &str) -> Option<Instant> {
        self.shared.opens.until(key).map(|n| self.shared.instant(n))
    }

    /// The entry of `key`'s hold-back, for a caller that keeps state per key
    /// and then reads it with one atomic load per call.
    pub fn hold_entry(&self, key: &str) -> FleetEntry {
        FleetEntry::new(self.shared.clone(), Kind::Hold, key)
    }

    /// The entry of `key`'s breaker open, for a breaker that keeps it beside
    /// its own state and then reads it with one atomic load per call.
    pub fn breaker_entry(&self, key: &str) -> FleetEntry {
        FleetEntry::new(self.shared.clone(), Kind::Open, key)
    }

    /// The fleet-wide open of the breaker of `key`, if one is known: what a
    /// replica keeps when its probe starts, to close exactly that open.
    pub fn breaker_trip(&self, key: &str) -> Option<Trip> {
        let slot = self.shared.opens.slot(key);
        match slot.until() {
            0 => None,
            n => Some(Trip {
                until: self.shared.instant(n),
                token: slot.token(),
            }),
        }
    }

    /// Holds `key` back until `until` fleet-wide (an upstream said it will
    /// refuse until then). Extend-only: an earlier instant than one already
    /// known changes nothing. At most five minutes ahead are shared.
    pub fn publish_hold(&self, key: &str, until: Instant) {
        let slot = self.shared.holds.slot(key);
        self.shared.holds.raise(&slot, self.shared.nanos(until), 0);
        self.shared
            .enqueue(Kind::Hold, slot.digest, Pending::Extend(until));
    }

    /// Opens the breaker of `key` until `until` fleet-wide. Extend-only, like
    /// [`publish_hold`](Self::publish_hold); at most one hour ahead is
    /// shared. A new open ends the probe lease of the previous one.
    pub fn publish_opened(&self, key: &str, until: Instant) {
        let slot = self.shared.opens.slot(key);
        self.shared.opens.raise(&slot, self.shared.nanos(until), 0);
        self.shared
            .enqueue(Kind::Open, slot.digest, Pending::Extend(until));
    }

    /// Closes the breaker of `key` fleet-wide after this replica's probe
    /// succeeded: the open `trip` (the one the probe saw when it started,
    /// from [`breaker_trip`](Self::breaker_trip)), if any, and this
    /// replica's probe lease, so that the other replicas may probe at once.
    /// An open that replaced `trip` meanwhile stays open, and so does every
    /// other replica's lease on it. An open the store never confirmed closes
    /// locally only; the store's copy, if any, ends by itself.
    pub fn publish_closed(&self, key: &str, trip: Option<Trip>) {
        let shared = &self.shared;
        let slot = shared.opens.slot(key);
        let token = trip.map_or(0, |t| t.token);
        if slot.token() == token {
            shared.opens.clear(&slot);
        }
        shared.enqueue(Kind::Open, slot.digest, Pending::Close(token));
    }

    /// Asks for the fleet's one half-open probe of the breaker of `key`, for
    /// `lease` (the probe's timeout). The lease ends early when the breaker
    /// closes or opens again. Waits at most the lease timeout; when the store
    /// is known to be down, or left a call's request unanswered within the
    /// last poll interval and call timeout, answers at once.
    pub fn probe(&self, key: &str, lease: Duration) -> Answer<Probe> {
        let shared = self.shared.clone();
        if !shared.may_ask() {
            return Answer::ready(Probe::Unavailable);
        }
        let digest = shared.opens.slot(key).digest;
        let lease_ms = crate::util::saturating_millis(lease).max(1);
        Answer::asking(Box::pin(async move {
            let holder = shared.settings.replica.as_str();
            let ask = shared.backend.probe(digest, holder, lease_ms);
            match timeout(shared.settings.lease_timeout, ask).await {
                Ok(Ok(ProbeGrant::Granted)) => Probe::Granted,
                Ok(Ok(ProbeGrant::Held { remaining_ms })) => {
                    Probe::Denied(Duration::from_millis(remaining_ms))
                }
                Ok(Err(_)) | Err(_) => {
                    shared.unanswered();
                    Probe::Unavailable
                }
            }
        }))
    }

    /// Takes one call of the fleet-wide `rate` kept under `key`. Ready at
    /// once while this replica holds leased cells (and then, when they run
    /// low, a new lease is fetched in the background, unless a lease is one
    /// cell: a rate that low is asked for call by call, so that no leased
    /// cell waits for a call and expires); else asks the store
    /// within the lease timeout, or answers `Unavailable` at once while the
    /// store is away or for a poll interval and a call timeout after a
    /// request of a call went unanswered. The fleet as a whole never sends more than
    /// the rate; cells a replica leased and did not spend within their life
    /// (at most one second) are lost.
    pub fn acquire(&self, key: &str, rate: Rate) -> Answer<Permit> {
        let shared = &self.shared;
        let pool = shared.pools.get(key);
        let (_, _, cells) = rate.plan();
        let now = Instant::now();
        match pool.take(now, (cells > 1).then_some(cells / 2)) {
            Taken::Cell { refill } => {
                if refill {
                    let (shared, pool) = (shared.clone(), pool.clone());
                    tokio::spawn(async move {
                        let budget = shared.settings.call_timeout;
                        let _ = lease(&shared, &pool, rate, budget).await;
                        pool.refilled();
                    });
                }
                Answer::ready(Permit::Granted)
            }
            Taken::NotBefore(at) => Answer::ready(Permit::RetryAfter(at - now)),
            Taken::Empty if !shared.may_ask() => Answer::ready(Permit::Unavailable),
            Taken::Empty => {
                let shared = shared.clone();
                Answer::asking(Box::pin(async move {
                    let budget = shared.settings.lease_timeout;
                    match lease(&shared, &pool, rate, budget).await {
                        None => Permit::Unavailable,
                        Some(_) => match pool.take(Instant::now(), None) {
                            Taken::Cell { .. } => Permit::Granted,
                            Taken::NotBefore(at) => {
                                Permit::RetryAfter(at.saturating_duration_since(Instant::now()))
                            }
                            Taken::Empty => Permit::RetryAfter(Duration::ZERO),
                        },
                    }
                }))
            }
        }
    }

    /// True while the store answers.
    pub fn is_available(&self) -> bool {
        self.shared.health.available()
    }
}

/// Leases cells of `rate` into `pool`, within `budget`; `None` when the store
/// did not answer.
async fn lease(shared: &Shared, pool: &Pool, rate: Rate, budget: Duration) -> Option<()> {
    let (gcra, life, cells) = rate.plan();
    let sent = Instant::now();
    let ask = shared.backend.lease(pool.digest, gcra, cells);
    match timeout(budget, ask).await {
        // Cells live from the request's departure, which precedes the
        // store's grant: never longer than their life.
        Ok(Ok(LeaseGrant::Cells(n))) => pool.add(n, sent + life),
        Ok(Ok(LeaseGrant::Empty { retry_us })) => {
            pool.empty_until(Instant::now() + Duration::from_micros(retry_us))
        }
        Ok(Err(_)) | Err(_) => {
            shared.unanswered();
            return None;
        }
    }
    Some(())
}
