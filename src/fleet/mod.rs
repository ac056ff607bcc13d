//! Fleet state: replicas behind one load balancer share what they learnt.
//!
//! Each replica keeps a [`FleetMirror`]: a local, bounded copy of the state
//! the fleet shares, read on every call without waiting, and a background
//! task that keeps it in step with a shared store. What is shared:
//!
//! - **hold-backs**: a key (an upstream, a credential) the upstream said it
//!   will refuse until an instant. Extend-only: a later, shorter hint never
//!   shortens a longer one. Capped at five minutes.
//! - **breaker opens and closes**: an open on one replica opens the others
//!   for the time left; one replica per fleet sends the half-open probe
//!   (a lease, [`FleetMirror::probe`]); a close ends exactly the open the
//!   prober saw (compare-and-delete), never a newer one.
//! - **rates**: a fleet-wide limit per key ([`Rate`]), a GCRA in the store,
//!   handed out as small leases that each replica spends locally, so the
//!   fleet as a whole never sends more than the rate.
//!
//! Every deadline is taken in the store's clock and turned into a local
//! instant from the store's own `now`, so replica clocks never need to
//! agree. Keys reach the store only as a SHA-256 digest, under a versioned
//! name in a namespace (`thr:v1:{namespace}:…`): no credential ever does.
//!
//! # Timing
//!
//! Reads cost one atomic load while nothing is held anywhere, and a hash, a
//! shared lock and one atomic load otherwise. A change is pushed at once and
//! reaches the other replicas as a published message (one round trip); a
//! poll every [`poll_interval`](FleetBuilder::poll_interval) (500 ms by
//! default) catches anything a message missed. Rate and probe leases are the
//! only calls that wait on the store, each at most the
//! [`lease_timeout`](FleetBuilder::lease_timeout) (20 ms by default), and
//! rate leases are fetched ahead of need. One request left unanswered makes
//! the calls of the next poll interval and
//! [`call_timeout`](FleetBuilder::call_timeout) decide locally at once, so a
//! store that stops answering costs one lease timeout per replica, not one
//! per call.
//!
//! # When the store is away
//!
//! A store that is down, slow or restarted never stops a call: reads answer
//! from the mirror, changes wait in a bounded queue, leases answer
//! `Unavailable` so the caller decides locally. The mirror says
//! `fleet state unavailable: …` once and `fleet state restored` once (as a
//! [`FleetNotice`] to [`FleetBuilder::on_notice`] and as a `tracing` event),
//! pushes what waited and catches up within one poll interval.
//!
//! # Stores
//!
//! [`MemoryStore`] shares state between mirrors of one process (tests, or
//! several stacks in one binary). With the `redis` feature,
//! [`FleetBuilder::redis`] uses a Redis server (7.0 or later): use
//! `maxmemory-policy noeviction` or a `volatile-*` policy, as every key
//! has a time to live.
//!
//! # Example
//!
//! Two replicas sharing one store: a hold-back published by one reaches the
//! other.
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let a = FleetMirror::builder("gateway").memory(&store).unwrap();
//! let b = FleetMirror::builder("gateway").memory(&store).unwrap();
//!
//! let until = Instant::now() + Duration::from_secs(30);
//! a.publish_hold("sk-key-1", until);
//! while b.held_until("sk-key-1").is_none() {
//!     tokio::time::sleep(Duration::from_millis(5)).await;
//! }
//! assert!(b.held_until("sk-key-1").unwrap() >= until - Duration::from_millis(5));
//! # }
//! ```

mod agent;
mod answer;
mod backend;
mod builder;
mod entry;
mod key;
mod memory;
mod mirror;
mod notice;
mod rate;
#[cfg(feature = "redis")]
mod redis;
mod shared;
mod table;

pub use answer::Answer;
pub use builder::{FleetBuilder, FleetError};
pub use entry::FleetEntry;
pub use memory::MemoryStore;
pub use mirror::{FleetMirror, Permit, Probe, Trip};
pub use notice::FleetNotice;
pub use rate::Rate;
