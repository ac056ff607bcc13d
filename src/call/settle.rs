//! [`Settle`] and [`Pending`]: outcomes a layer inside the attempt loop
//! leaves to be recorded when the call ends.

use std::sync::Arc;

/// A layer inside the attempt loop that leaves an attempt's outcome pending
/// while the call goes on, and records it when the call ends (the circuit
/// breaker: the attempts of one call count once).
pub(crate) trait Settle: Send + Sync {
    /// Records an outcome this layer left pending.
    fn settle(&self, outcome: u64);

    /// The layer (not the key) this belongs to: a later outcome of the same
    /// layer replaces an earlier one.
    fn layer(&self) -> usize;
}

/// The outcome of the latest finished attempt on one breaker of a call:
/// who records it and what (packed by its layer).
pub(crate) struct Pending {
    by: Arc<dyn Settle>,
    outcome: u64,
}

impl Pending {
    pub(crate) fn new(by: Arc<dyn Settle>, outcome: u64) -> Self {
        Pending { by, outcome }
    }

    /// Records the outcome.
    pub(crate) fn settle(self) {
        self.by.settle(self.outcome);
    }

    /// Whether both come from the same layer.
    pub(crate) fn same_layer(&self, other: &Pending) -> bool {
        self.by.layer() == other.by.layer()
    }

    /// Whether both are recorded by the same breaker.
    pub(crate) fn same_settler(&self, other: &Pending) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.by), Arc::as_ptr(&other.by))
    }
}
