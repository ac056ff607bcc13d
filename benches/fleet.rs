//! The fleet mirror on the hot path.
//!
//! First, what a call pays with the mirror on and its key not held (nothing
//! held at all, then 1000 other keys held and open): pacing (default key)
//! and a breaker per model around an upstream that answers at once, with
//! and without `.fleet(mirror)` on both layers. The two stacks
//! are timed back to back in each of many rounds (a shared machine's load
//! changes between rounds, rarely within one) and the median difference is
//! printed; calls are polled once with a no-op waker, so only the services
//! and their futures are timed, not a runtime.
//!
//! Then the mirror's reads alone (criterion): `held_until(key)` when
//! nothing is held anywhere (one atomic load), when other keys are held (a
//! hash, a shared lock, one atomic load), and when the key itself is held
//! (the same, plus turning the deadline into an instant); and a kept
//! `FleetEntry` (one atomic load), as a breaker or pacing slot reads it.
//! `breaker_open_until` and `breaker_entry` are the same code on the other
//! table.
//!
//! `cargo bench --features fleet --bench fleet`

mod support;

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use support::{chat_request, Mode, Upstream};
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_http_resilience::circuit_breaker::{BreakerKey, ByExtension, CircuitBreakerLayer};
use tower_http_resilience::fleet::{FleetMirror, MemoryStore};
use tower_http_resilience::pacing::PacingLayer;

/// A chat request with its model in the extensions (a gateway puts the
/// JSON body's `model` there).
fn request() -> Request<Full<Bytes>> {
    let mut req = chat_request();
    req.extensions_mut().insert(BreakerKey::new("gpt-4o-mini"));
    req
}

/// Nanoseconds per call over `n` calls, each polled once with a no-op waker
/// (the upstream answers at once), the response dropped.
fn time<S, B>(svc: &mut S, n: usize) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let reqs: Vec<_> = (0..n).map(|_| request()).collect();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let start = std::time::Instant::now();
    for req in reqs {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut call = std::pin::pin!(svc.call(req));
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(res) => drop(black_box(res.unwrap())),
            Poll::Pending => panic!("the upstream answers at once"),
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Pacing and a breaker per model, sharing `mirror` when given.
fn stack(
    mirror: Option<&FleetMirror>,
) -> impl Service<Request<Full<Bytes>>, Response = Response<impl Sized>, Error = impl std::fmt::Debug>
{
    let mut pacing = PacingLayer::new();
    let mut breaker = CircuitBreakerLayer::new().key(ByExtension);
    if let Some(mirror) = mirror {
        pacing = pacing.fleet(mirror.clone());
        breaker = breaker.fleet(mirror.clone());
    }
    pacing.layer(breaker.layer(Upstream::ok(Mode::Dropped)))
}

const ROUNDS: usize = 301;
const BATCH: usize = 2_000;

/// The median cost of the stack without the mirror and the median of the
/// mirror's extra cost, over paired rounds.
fn mirror_on_vs_off(mirror: &FleetMirror) -> (f64, f64) {
    let (mut off, mut on) = (stack(None), stack(Some(mirror)));
    time(&mut off, 1_000);
    time(&mut on, 1_000);
    let (mut base, mut diff) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let b = time(&mut off, BATCH);
        let v = time(&mut on, BATCH);
        base.push(b);
        diff.push(v - b);
    }
    base.sort_by(f64::total_cmp);
    diff.sort_by(f64::total_cmp);
    (base[ROUNDS / 2], diff[ROUNDS / 2])
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let store = MemoryStore::new();
    let hot = FleetMirror::builder("bench").memory(&store).unwrap();
    let (off, extra) = mirror_on_vs_off(&hot);
    let far = Instant::now() + Duration::from_secs(3600);
    for i in 0..1_000 {
        hot.publish_hold(&format!("other-{i}"), far);
        hot.publish_opened(&format!("other-{i}"), far);
    }
    let (_, extra_held) = mirror_on_vs_off(&hot);
    println!("| stack: pacing + a breaker per model, the call's key not held | ns per call |");
    println!("|---|---:|");
    println!("| fleet mirror off | {off:.1} |");
    println!("| fleet mirror on, nothing held | {extra:+.1} |");
    println!("| fleet mirror on, 1000 other keys held and open | {extra_held:+.1} |");

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
