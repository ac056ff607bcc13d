//! The byte budget shared by every call of one layer, and the hold of one
//! call on it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

/// The largest number of bytes one call may hold: what one semaphore
/// acquisition can ask for.
pub(crate) const MAX_HOLD: usize = u32::MAX as usize;

/// Request-body bytes held in memory, shared by every service of a layer.
///
/// A semaphore with one permit per byte: waiting calls are served in the
/// order they came, so a large body is not starved by a stream of small
/// ones.
#[derive(Clone)]
pub(crate) struct Budget {
    semaphore: Arc<Semaphore>,
    capacity: usize,
}

/// A wait for room in the budget.
pub(crate) type Waiting = Pin<Box<dyn Future<Output = Hold> + Send>>;

impl Budget {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        Budget {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// The bytes the budget holds in all.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The bytes held right now.
    pub(crate) fn held(&self) -> usize {
        self.capacity
            .saturating_sub(self.semaphore.available_permits())
    }

    /// `bytes` from the budget if they are free now and nobody waits before.
    pub(crate) fn try_hold(&self, bytes: usize) -> Option<Hold> {
        let n = u32::try_from(bytes).ok()?;
        let permit = self.semaphore.clone().try_acquire_many_owned(n).ok()?;
        permit.forget();
        Some(self.hold(bytes))
    }

    /// Waits until `bytes` are free, after the calls that waited before.
    pub(crate) fn wait_for(&self, bytes: usize) -> Waiting {
        let n = u32::try_from(bytes.min(MAX_HOLD)).unwrap_or(u32::MAX);
        let budget = self.clone();
        Box::pin(async move {
            match budget.semaphore.clone().acquire_many_owned(n).await {
                Ok(permit) => permit.forget(),
                Err(_) => unreachable!("the budget's semaphore is never closed"),
            }
            budget.hold(n as usize)
        })
    }

    fn hold(&self, bytes: usize) -> Hold {
        Hold {
            semaphore: self.semaphore.clone(),
            bytes,
        }
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("capacity", &self.capacity)
            .field("held", &self.held())
            .finish()
    }
}

/// Bytes one call holds in the budget; given back when dropped.
pub(crate) struct Hold {
    semaphore: Arc<Semaphore>,
    bytes: usize,
}

impl Hold {
    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back everything above `bytes`.
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.semaphore.add_permits(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// Takes over what `other` holds.
    pub(crate) fn merge(&mut self, mut other: Hold) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// `data` as `Bytes` that give this hold back when the last clone of
    /// them is dropped, so the budget counts the memory as long as it lives.
    pub(crate) fn attach(mut self, data: Bytes) -> Bytes {
        self.shrink_to(data.len());
        if data.is_empty() {
            return data;
        }
        Bytes::from_owner(Held { data, _hold: self })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.semaphore.add_permits(self.bytes);
        }
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold").field("bytes", &self.bytes).finish()
    }
}

/// The owner of a collected body's memory: the data and its hold.
struct Held {
    data: Bytes,
    _hold: Hold,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_come_back_when_the_bytes_are_dropped() {
        let budget = Budget::new(100);
        let hold = budget.try_hold(60).unwrap();
        assert_eq!(budget.held(), 60);
        assert!(budget.try_hold(50).is_none());

        let data = hold.attach(Bytes::from(vec![7u8; 40]));
        assert_eq!(budget.held(), 40, "shrunk to the data");
        let copy = data.clone();
        drop(data);
        assert_eq!(budget.held(), 40, "a clone still holds the memory");
        assert_eq!(copy.len(), 40);
        drop(copy);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn merged_holds_are_given_back_once() {
        let budget = Budget::new(100);
        let mut a = budget.try_hold(30).unwrap();
        a.merge(budget.try_hold(20).unwrap());
        assert_eq!((a.bytes(), budget.held()), (50, 50));
        drop(a);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order() {
        let budget = Budget::new(100);
        let first = budget.try_hold(100).unwrap();
        let big = budget.wait_for(80);
        let small = budget.wait_for(10);
        tokio::pin!(big, small);
        assert!(futures_util::poll!(big.as_mut()).is_pending());
        assert!(futures_util::poll!(small.as_mut()).is_pending());
        assert!(budget.try_hold(1).is_none(), "no jumping the queue");
        drop(first);
        let big = big.await;
        let small = small.await;
        assert_eq!((big.bytes(), small.bytes(), budget.held()), (80, 10, 90));
    }
}
