//! The fleet mirror's read, as the breaker and the pacing layer will call it
//! on every request: `held_until(key)` when nothing is held anywhere (one
//! atomic load), when other keys are held (a hash, a shared lock, one atomic
//! load), and when the key itself is held (the same, plus turning the
//! deadline into an instant); and a kept `FleetEntry` (one atomic load), as
//! a breaker or pacing slot reads it. `breaker_open_until` and
//! `breaker_entry` are the same code on the other table.
//!
//! `cargo bench --features fleet --bench fleet`

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use tokio::time::Instant;
use tower_http_resilience::fleet::{FleetMirror, MemoryStore};

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let store = MemoryStore::new();
    let mirror = FleetMirror::builder("bench").memory(&store).unwrap();
    let key = "sk-proj-0123456789abcdef0123456789abcdef";

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();

    c.bench_function("fleet/held_until, nothing held", |b| {
        b.iter(|| black_box(mirror.held_until(black_box(key))))
    });

    // Other keys held: the read of an unheld key takes the lookup path.
    let until = Instant::now() + Duration::from_secs(3600);
    for i in 0..1_000 {
        mirror.publish_hold(&format!("other-{i}"), until);
    }
    assert!(mirror.held_until(key).is_none());
    c.bench_function("fleet/held_until, others held", |b| {
        b.iter(|| black_box(mirror.held_until(black_box(key))))
    });

    let entry = mirror.hold_entry(key);
    c.bench_function("fleet/entry.until, others held", |b| {
        b.iter(|| black_box(black_box(&entry).until()))
    });

    mirror.publish_hold(key, until);
    assert!(mirror.held_until(key).is_some());
    c.bench_function("fleet/held_until, key held", |b| {
        b.iter(|| black_box(mirror.held_until(black_box(key))))
    });

    c.bench_function("fleet/entry.until, key held", |b| {
        b.iter(|| black_box(black_box(&entry).until()))
    });

    c.final_summary();
}
