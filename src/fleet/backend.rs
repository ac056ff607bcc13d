//! What a shared store does for the mirror: the operations, their answers in
//! the store's own clock, and the one trait every store implements.
//!
//! Every time a store returns is milliseconds (microseconds for rates) on the
//! store's clock, together with that clock's `now`, so a replica turns it into
//! a local instant without ever comparing its own wall clock with the store's.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use futures_util::stream::BoxStream;

use super::key::{Digest, Kind};

/// The longest hold-back a store keeps: five minutes, so that one bogus hint
/// cannot stop a fleet for longer.
pub(crate) const MAX_HOLD_MS: u64 = 5 * 60 * 1000;

/// The longest a store keeps a breaker open or a probe lease: one hour.
pub(crate) const MAX_OPEN_MS: u64 = 60 * 60 * 1000;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A change one replica publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Hold the key back for `wait_ms` from the store's now (extend-only).
    Hold { digest: Digest, wait_ms: u64 },
    /// Open the breaker for `open_ms` from the store's now (extend-only); a
    /// new trip ends the probe lease of the old one.
    Open { digest: Digest, open_ms: u64 },
    /// Close the breaker if its open deadline is still `token`
    /// (compare-and-delete; a token of 0 names no open), and end its probe
    /// lease: any holder's when the open closed, else the pusher's own.
    Close { digest: Digest, token: u64 },
}

/// A state one replica learns: from its own change, a message, or a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Update {
    /// The entry of `kind` now lasts until `until_ms`; the store's clock read
    /// `now_ms` when it said so.
    Until {
        kind: Kind,
        digest: Digest,
        until_ms: u64,
        now_ms: u64,
    },
    /// The breaker's open deadline `token` was closed.
    Closed { digest: Digest, token: u64 },
    /// Nothing changed (a close that lost its race, a shorter hold).
    Unchanged,
    /// Messages may have been missed: poll now.
    Resync,
}

/// Every live entry, as one poll saw it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) now_ms: u64,
    pub(crate) entries: Vec<(Kind, Digest, u64)>,
    /// False when more entries were live than the poll asked for; absence
    /// then proves nothing.
    pub(crate) complete: bool,
}

/// The answer to a probe lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeGrant {
    Granted,
    /// Another replica holds the lease for `remaining_ms` more.
    Held {
        remaining_ms: u64,
    },
}

/// A rate as the store's GCRA sees it, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// One cell every `emission_us`.
    pub(crate) emission_us: u64,
    /// How far ahead of schedule a cell may be granted.
    pub(crate) tolerance_us: u64,
}

/// The answer to a rate lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseGrant {
    /// `cells` cells (at least one), all conforming at the store's now.
    Cells(u32),
    /// None now; the next conforms in `retry_us`.
    Empty { retry_us: u64 },
}

/// A store that failed or could not be reached. The text never holds a
/// credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendError(pub(crate) String);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shared store of fleet state. Every method is called from the mirror's
/// background task or, for leases, under a tight timeout; none is ever on the
/// path of a call that only reads the mirror.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Applies one change of the replica named `holder` (its name in probe
    /// leases) and says what the entry is now.
    fn push(&self, change: Change, holder: &str) -> BoxFuture<'_, Result<Update, BackendError>>;

    /// Every live entry, at most `limit` of them.
    fn poll(&self, limit: usize) -> BoxFuture<'_, Result<Snapshot, BackendError>>;

    /// Every change any replica makes from now on, until the connection ends
    /// (the stream then ends).
    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Update>, BackendError>>;

    /// Asks for the breaker's fleet-wide probe lease for `lease_ms`.
    fn probe(
        &self,
        digest: Digest,
        holder: &str,
        lease_ms: u64,
    ) -> BoxFuture<'_, Result<ProbeGrant, BackendError>>;

    /// Asks for up to `cells` cells of the rate kept under `digest`.
    fn lease(
        &self,
        digest: Digest,
        gcra: Gcra,
        cells: u32,
    ) -> BoxFuture<'_, Result<LeaseGrant, BackendError>>;
}
