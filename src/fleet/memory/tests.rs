//! The in-memory store's semantics, which are the Redis scripts'.

use super::*;
use std::time::Duration;

fn backend() -> MemoryBackend {
    MemoryStore::new().backend("t")
}

fn hold(b: &MemoryBackend, d: Digest, wait_ms: u64) -> Update {
    b.extend(Kind::Hold, d, wait_ms).unwrap()
}

fn open(b: &MemoryBackend, d: Digest, open_ms: u64) -> u64 {
    match b.extend(Kind::Open, d, open_ms).unwrap() {
        Update::Until { until_ms, .. } => until_ms,
        other => panic!("{other:?}"),
    }
}

fn left(u: Update) -> u64 {
    match u {
        Update::Until {
            until_ms, now_ms, ..
        } => until_ms - now_ms,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn holds_only_extend() {
    let (b, d) = (backend(), Digest::of("k"));
    assert_eq!(left(hold(&b, d, 30_000)), 30_000);
    assert_eq!(left(hold(&b, d, 5_000)), 30_000, "never shortened");
    assert_eq!(left(hold(&b, d, 60_000)), 60_000);
    assert_eq!(left(hold(&b, d, u64::MAX)), MAX_HOLD_MS, "capped");
    assert_eq!(hold(&b, Digest::of("z"), 0), Update::Unchanged);
}

#[tokio::test(start_paused = true)]
async fn close_compares_and_deletes() {
    let (b, d) = (backend(), Digest::of("k"));
    let first = open(&b, d, 1_000);
    tokio::time::advance(Duration::from_millis(10)).await;
    let second = open(&b, d, 1_000);
    assert!(second > first);
    assert_eq!(b.close(d, first, "a").unwrap(), Update::Unchanged, "stale");
    assert_eq!(b.snapshot(10).unwrap().entries.len(), 1);
    let closed = Update::Closed {
        digest: d,
        token: second,
    };
    assert_eq!(b.close(d, second, "a").unwrap(), closed);
    assert!(b.snapshot(10).unwrap().entries.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_close_without_an_open_ends_the_closers_lease_only() {
    let (b, d) = (backend(), Digest::of("k"));
    assert_eq!(b.take_probe(d, "a", 5_000).unwrap(), ProbeGrant::Granted);
    assert_eq!(b.close(d, 0, "b").unwrap(), Update::Unchanged);
    let held = ProbeGrant::Held {
        remaining_ms: 5_000,
    };
    assert_eq!(b.take_probe(d, "c", 5_000).unwrap(), held, "not b's lease");
    assert_eq!(b.close(d, 0, "a").unwrap(), Update::Unchanged);
    assert_eq!(
        b.take_probe(d, "c", 5_000).unwrap(),
        ProbeGrant::Granted,
        "a's lease ended with its close"
    );
    // A live open that is not the closer's token keeps every lease.
    open(&b, d, 60_000);
    assert_eq!(b.take_probe(d, "c", 5_000).unwrap(), ProbeGrant::Granted);
    assert_eq!(b.close(d, 0, "c").unwrap(), Update::Unchanged);
    assert_eq!(
        b.take_probe(d, "a", 5_000).unwrap(),
        ProbeGrant::Held {
            remaining_ms: 5_000
        }
    );
}

#[tokio::test(start_paused = true)]
async fn one_probe_lease_per_trip() {
    let (b, d) = (backend(), Digest::of("k"));
    assert_eq!(b.take_probe(d, "a", 500).unwrap(), ProbeGrant::Granted);
    assert_eq!(
        b.take_probe(d, "a", 500).unwrap(),
        ProbeGrant::Granted,
        "re-entrant"
    );
    let held = ProbeGrant::Held { remaining_ms: 500 };
    assert_eq!(b.take_probe(d, "b", 500).unwrap(), held);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        b.take_probe(d, "b", 500).unwrap(),
        ProbeGrant::Granted,
        "expired"
    );
    open(&b, d, 1_000);
    let again = b.take_probe(d, "c", 500).unwrap();
    assert_eq!(again, ProbeGrant::Granted, "a new open ends the lease");
}

#[tokio::test(start_paused = true)]
async fn gcra_never_over_admits() {
    let (b, d) = (backend(), Digest::of("k"));
    let gcra = Gcra {
        emission_us: 1_000_000,
        tolerance_us: 9_000_000,
    };
    assert_eq!(b.take_cells(d, gcra, 5).unwrap(), LeaseGrant::Cells(5));
    assert_eq!(b.take_cells(d, gcra, 5).unwrap(), LeaseGrant::Cells(5));
    let empty = LeaseGrant::Empty {
        retry_us: 1_000_000,
    };
    assert_eq!(b.take_cells(d, gcra, 5).unwrap(), empty);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.take_cells(d, gcra, 5).unwrap(), LeaseGrant::Cells(1));
}

#[tokio::test(start_paused = true)]
async fn unavailable_fails_and_ends_subscriptions() {
    let store = MemoryStore::new();
    let b = store.backend("t");
    let mut sub = b.subscribe().await.unwrap();
    store.set_available(false);
    assert!(sub.next().await.is_none());
    assert!(b.poll(1).await.is_err());
    store.set_available(true);
    assert!(b.poll(1).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn namespaces_are_apart() {
    let store = MemoryStore::new();
    let (a, z) = (store.backend("a"), store.backend("z"));
    hold(&a, Digest::of("k"), 1_000);
    assert_eq!(a.snapshot(10).unwrap().entries.len(), 1);
    assert!(z.snapshot(10).unwrap().entries.is_empty());
}
