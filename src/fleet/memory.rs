//! A shared store in process memory: several mirrors in one process share it
//! as several replicas share a Redis server. Its semantics are those of the
//! Redis scripts, on tokio's clock, so tests run on a paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::stream::{self, StreamExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::backend::{
    Backend, BackendError, BoxFuture, Change, Gcra, LeaseGrant, ProbeGrant, Snapshot, Update,
};
use super::backend::{MAX_HOLD_MS, MAX_OPEN_MS};
use super::key::{Digest, Kind};

/// Entries a store holds at most (holds, opens, probes and rates together).
const MAX_ENTRIES: usize = 100_000;

/// A shared fleet store in memory, for tests and single-process setups with
/// several stacks. Cloning it shares it.
///
/// Several [`FleetMirror`](super::FleetMirror)s built on one store behave
/// as replicas sharing one Redis server: the same extend-only holds,
/// compare-and-delete closes, probe leases and rate leases, with changes
/// published to every mirror at once. Its clock is tokio's, so it runs on a
/// paused clock too.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let a = FleetMirror::builder("test").memory(&store).unwrap();
/// let b = FleetMirror::builder("test").memory(&store).unwrap();
/// a.publish_opened("gpt-4o", Instant::now() + Duration::from_secs(30));
/// // b learns it from the store, in the background.
/// while b.breaker_open_until("gpt-4o").is_none() {
///     tokio::task::yield_now().await;
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<Option<(Arc<str>, Update)>>,
    epoch: Instant,
    available: AtomicBool,
}

type Name = (Arc<str>, Digest);

#[derive(Debug, Default)]
struct State {
    /// (namespace, digest) per kind → deadline in store ms.
    entries: HashMap<(Kind, Name), u64>,
    /// Probe leases: holder and end, in store ms.
    probes: HashMap<Name, (String, u64)>,
    /// Rates: theoretical arrival time, in store µs.
    tats: HashMap<Name, u64>,
}

impl State {
    fn prune(&mut self, now_ms: u64) {
        self.entries.retain(|_, until| *until > now_ms);
        self.probes.retain(|_, (_, end)| *end > now_ms);
        self.tats
            .retain(|_, tat| *tat > now_ms.saturating_mul(1000));
    }

    fn len(&self) -> usize {
        self.entries.len() + self.probes.len() + self.tats.len()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store whose clock starts now.
    pub fn new() -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                events: broadcast::channel(1024).0,
                epoch: Instant::now(),
                available: AtomicBool::new(true),
            }),
        }
    }

    /// Takes the store away (`false`: every call fails at once and every
    /// subscription ends, as when a server is down) or brings it back with
    /// what it held. For outage tests.
    ///
    /// ```
    /// use tower_http_resilience::fleet::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// store.set_available(false);
    /// store.set_available(true);
    /// ```
    pub fn set_available(&self, available: bool) {
        self.inner.available.store(available, Ordering::Release);
        if !available {
            let _ = self.inner.events.send(None);
        }
    }

    pub(crate) fn backend(&self, namespace: &str) -> MemoryBackend {
        MemoryBackend {
            store: self.inner.clone(),
            ns: Arc::from(namespace),
        }
    }
}

pub(crate) struct MemoryBackend {
    store: Arc<Inner>,
    ns: Arc<str>,
}

impl MemoryBackend {
    fn now_ms(&self) -> u64 {
        // An offset keeps every store time above zero, which means "none".
        crate::util::saturating_millis(self.store.epoch.elapsed()).saturating_add(1_000)
    }

    fn open(&self) -> Result<(MutexGuard<'_, State>, u64), BackendError> {
        if !self.store.available.load(Ordering::Acquire) {
            return Err(BackendError("memory store unavailable".to_owned()));
        }
        let now = self.now_ms();
        let mut state = self.store.state.lock().unwrap_or_else(|e| e.into_inner());
        state.prune(now);
        Ok((state, now))
    }

    fn name(&self, digest: Digest) -> Name {
        (self.ns.clone(), digest)
    }

    fn publish(&self, update: Update) {
        let _ = self.store.events.send(Some((self.ns.clone(), update)));
    }

    fn extend(&self, kind: Kind, digest: Digest, wait_ms: u64) -> Result<Update, BackendError> {
        let (mut state, now_ms) = self.open()?;
        let cap = if kind == Kind::Hold {
            MAX_HOLD_MS
        } else {
            MAX_OPEN_MS
        };
        let wait = wait_ms.min(cap);
        let key = (kind, self.name(digest));
        let cur = state.entries.get(&key).copied().unwrap_or(0);
        let until_ms = now_ms + wait;
        let at = |until_ms| Update::Until {
            kind,
            digest,
            until_ms,
            now_ms,
        };
        if wait == 0 || until_ms <= cur {
            return Ok(if cur == 0 { Update::Unchanged } else { at(cur) });
        }
        if cur == 0 && state.len() >= MAX_ENTRIES {
            return Err(BackendError("memory store full".to_owned()));
        }
        state.entries.insert(key, until_ms);
        if kind == Kind::Open {
            state.probes.remove(&self.name(digest));
        }
        drop(state);
        self.publish(at(until_ms));
        Ok(at(until_ms))
    }

    fn close(&self, digest: Digest, token: u64, holder: &str) -> Result<Update, BackendError> {
        let (mut state, _) = self.open()?;
        let key = (Kind::Open, self.name(digest));
        match state.entries.get(&key) {
            Some(&cur) if cur == token => {}
            Some(_) => return Ok(Update::Unchanged),
            // No live open (the prune dropped expired ones): the closer's
            // own probe lease ends, and the others hear that its probe
            // succeeded.
            None => {
                let name = self.name(digest);
                if state.probes.get(&name).is_some_and(|(h, _)| h == holder) {
                    state.probes.remove(&name);
                    drop(state);
                    self.publish(Update::Closed { digest, token });
                }
                return Ok(Update::Unchanged);
            }
        }
        state.entries.remove(&key);
        state.probes.remove(&self.name(digest));
        drop(state);
        let closed = Update::Closed { digest, token };
        self.publish(closed);
        Ok(closed)
    }

    fn snapshot(&self, limit: usize) -> Result<Snapshot, BackendError> {
        let (state, now_ms) = self.open()?;
        let mine = state
            .entries
            .iter()
            .filter(|((_, (ns, _)), _)| *ns == self.ns);
        let entries: Vec<_> = mine
            .clone()
            .take(limit)
            .map(|((kind, (_, d)), until)| (*kind, *d, *until))
            .collect();
        Ok(Snapshot {
            now_ms,
            complete: mine.count() <= limit,
            entries,
        })
    }

    fn take_probe(
        &self,
        digest: Digest,
        holder: &str,
        lease_ms: u64,
    ) -> Result<ProbeGrant, BackendError> {
        let (mut state, now_ms) = self.open()?;
        let name = self.name(digest);
        match state.probes.get(&name) {
            Some((h, end)) if h != holder => Ok(ProbeGrant::Held {
                remaining_ms: end - now_ms,
            }),
            _ => {
                let end = now_ms + lease_ms.clamp(1, MAX_OPEN_MS);
                state.probes.insert(name, (holder.to_owned(), end));
                Ok(ProbeGrant::Granted)
            }
        }
    }

    fn take_cells(
        &self,
        digest: Digest,
        gcra: Gcra,
        cells: u32,
    ) -> Result<LeaseGrant, BackendError> {
        let (mut state, now_ms) = self.open()?;
        let now = now_ms * 1000;
        let name = self.name(digest);
        let tat = state.tats.get(&name).copied().unwrap_or(0).max(now);
        let (t, tau) = (gcra.emission_us.max(1), gcra.tolerance_us);
        if tat > now + tau {
            return Ok(LeaseGrant::Empty {
                retry_us: tat - tau - now,
            });
        }
        let k = ((now + tau - tat) / t + 1).min(u64::from(cells.max(1)));
        state.tats.insert(name, tat + k * t);
        Ok(LeaseGrant::Cells(k as u32))
    }
}

impl Backend for MemoryBackend {
    fn push(&self, change: Change, holder: &str) -> BoxFuture<'_, Result<Update, BackendError>> {
        let out = match change {
            Change::Hold { digest, wait_ms } => self.extend(Kind::Hold, digest, wait_ms),
            Change::Open { digest, open_ms } => self.extend(Kind::Open, digest, open_ms),
            Change::Close { digest, token } => self.close(digest, token, holder),
        };
        Box::pin(std::future::ready(out))
    }

    fn poll(&self, limit: usize) -> BoxFuture<'_, Result<Snapshot, BackendError>> {
        Box::pin(std::future::ready(self.snapshot(limit)))
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<stream::BoxStream<'static, Update>, BackendError>> {
        let out = self.open().map(|_| {
            let rx = self.store.events.subscribe();
            let ns = self.ns.clone();
            stream::unfold(rx, move |mut rx| {
                let ns = ns.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(Some((n, update))) if n == ns => return Some((update, rx)),
                            Ok(Some(_)) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return Some((Update::Resync, rx))
                            }
                            Ok(None) | Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            })
            .boxed()
        });
        Box::pin(std::future::ready(out))
    }

    fn probe(
        &self,
        digest: Digest,
        holder: &str,
        lease_ms: u64,
    ) -> BoxFuture<'_, Result<ProbeGrant, BackendError>> {
        Box::pin(std::future::ready(
            self.take_probe(digest, holder, lease_ms),
        ))
    }

    fn lease(
        &self,
        digest: Digest,
        gcra: Gcra,
        cells: u32,
    ) -> BoxFuture<'_, Result<LeaseGrant, BackendError>> {
        Box::pin(std::future::ready(self.take_cells(digest, gcra, cells)))
    }
}

#[cfg(test)]
mod tests;
