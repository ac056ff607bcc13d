//! The per-call cost of a closed breaker: no allocation for a known key, and
//! (in release builds, `--ignored`) the time per call next to the bare
//! service.
//!
//! Calls are driven by hand with a no-op waker, so the numbers contain the
//! layer and nothing of a runtime.

#![cfg(feature = "circuit-breaker")]

mod counting_alloc;

use counting_alloc::allocations;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service};
use tower_http_resilience::circuit_breaker::{
    BreakerKey, ByAuthority, ByExtension, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};

#[derive(Clone, Copy)]
struct Upstream;

impl Service<Request<()>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

/// Makes one call and reads its body to the end, without a runtime.
fn call_once<S, B>(svc: &mut S, req: Request<()>) -> u16
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(req));
    let Poll::Ready(res) = fut.poll(&mut cx) else {
        panic!("the upstream answers at once")
    };
    let res = res.unwrap();
    let status = res.status().as_u16();
    let mut body = pin!(res.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        frame.unwrap();
    }
    status
}

fn requests(n: usize, make: impl Fn() -> Request<()>) -> Vec<Request<()>> {
    (0..n).map(|_| make()).collect()
}

/// Allocations per call over `n` calls, after the key is known.
fn allocations_per_call<S, B>(svc: &mut S, make: impl Fn() -> Request<()>) -> f64
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    call_once(svc, make()); // the first call allocates the key's breaker
    let reqs = requests(1000, make);
    let before = allocations();
    for req in reqs {
        assert_eq!(call_once(svc, req), 200);
    }
    (allocations() - before) as f64 / 1000.0
}

#[test]
fn a_closed_breaker_allocates_nothing_per_call_for_a_known_key() {
    let plain = |uri: &'static str| move || Request::get(uri).body(()).unwrap();
    let model = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(BreakerKey::new("gpt-4o-mini"));
        req
    };

    // The counter sees allocations.
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert_eq!(allocations() - before, 1);

    assert_eq!(
        allocations_per_call(&mut Upstream, plain("/")),
        0.0,
        "baseline"
    );

    let global = CircuitBreakerLayer::new();
    let handle = global.handle();
    assert_eq!(
        allocations_per_call(&mut global.layer(Upstream), plain("/")),
        0.0,
        "global key"
    );
    assert_eq!(handle.snapshot("").unwrap().calls(), 1001);

    let by_model = CircuitBreakerLayer::new().key(ByExtension);
    let handle = by_model.handle();
    assert_eq!(
        allocations_per_call(&mut by_model.layer(Upstream), model),
        0.0,
        "by model"
    );
    assert_eq!(
        handle.snapshot("gpt-4o-mini").unwrap().state(),
        CircuitState::Closed
    );

    let by_host = CircuitBreakerLayer::new().key(ByAuthority);
    let uri = "http://api.example.com/v1/chat/completions";
    assert_eq!(
        allocations_per_call(&mut by_host.layer(Upstream), plain(uri)),
        0.0,
        "by host"
    );

    // With the slow-call trigger on, the clock is read once more per call.
    let slow = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new().slow_calls(Duration::from_secs(10), 0.5),
    )
    .key(ByExtension);
    assert_eq!(
        allocations_per_call(&mut slow.layer(Upstream), model),
        0.0,
        "slow calls on"
    );
}

/// Nanoseconds per call, the best of a few rounds. The request is built in
/// the loop (the same for every service measured), so that it is hot in the
/// cache as it would be in a server.
fn ns_per_call<S, B>(svc: &mut S, make: impl Fn() -> Request<()>) -> f64
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    const N: u32 = 200_000;
    call_once(svc, make());
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..N {
                std::hint::black_box(call_once(svc, make()));
            }
            start.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .fold(f64::INFINITY, f64::min)
}

/// `cargo test --release --all-features --test circuit_breaker_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn closed_breaker_time_per_call() {
    let model = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(BreakerKey::new("gpt-4o-mini"));
        req
    };
    let bare = ns_per_call(&mut Upstream, model);
    let global = ns_per_call(&mut CircuitBreakerLayer::new().layer(Upstream), model);
    let by_model = ns_per_call(
        &mut CircuitBreakerLayer::new().key(ByExtension).layer(Upstream),
        model,
    );
    println!("bare service:           {bare:6.1} ns/call");
    println!(
        "breaker, global key:    {global:6.1} ns/call (+{:.1})",
        global - bare
    );
    println!(
        "breaker, key by model:  {by_model:6.1} ns/call (+{:.1})",
        by_model - bare
    );
}
