//! Behaviour of the circuit breaker against scripted upstreams, on a paused
//! clock (except the multi-thread counting test, which never waits).

#![cfg(feature = "circuit-breaker")]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Empty, Full};
use support::{Plan, Upstream};
use tokio::sync::mpsc;
use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::circuit_breaker::{
    key_fn, BreakerKey, ByExtension, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
    Classify, DefaultClassifier, ExtractKeyExt, GlobalKey, KeyDisplay, Observation, Transition,
    TransitionReason, Verdict,
};
use tower_http_resilience::{ApiError, ErrorKind};

/// The request every test sends: no body.
type Req = Request<Empty<Bytes>>;

fn request() -> Req {
    Request::new(Empty::new())
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::new()
        .window(Duration::from_secs(10), 10)
        .min_calls(10)
        .failure_ratio(0.5)
        .open_duration(Duration::from_secs(10), Duration::from_secs(60), 0.0)
}

/// Sends one request (with `model` as its breaker key when given) and
/// reads the whole response body; returns the status or the error.
async fn send<S, B>(svc: &mut S, model: Option<&'static str>) -> Result<u16, ApiError>
where
    S: Service<Req, Response = Response<B>, Error = ApiError>,
    B: http_body::Body,
{
    let mut req = request();
    if let Some(m) = model {
        req.extensions_mut().insert(BreakerKey::new(m));
    }
    let res = svc.ready().await?.call(req).await?;
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    Ok(status)
}

fn transitions(layer: &CircuitBreakerLayer<impl Sized, impl Sized>) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    layer
        .handle()
        .on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

#[tokio::test(start_paused = true)]
async fn opens_exactly_when_the_ratio_reaches_the_threshold_after_min_calls() {
    let layer = CircuitBreakerLayer::with_config(config());
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    // Nine failures: a ratio of 1.0, but fewer than the minimum calls.
    up.push_n(9, Plan::status(500));
    for _ in 0..9 {
        assert_eq!(send(&mut svc, None).await.unwrap(), 500);
    }
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    // The tenth call, a success, completes the minimum: 9/10 >= 0.5.
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(up.calls(), 10);

    // Just under the threshold, then exactly at it.
    handle.force_closed("");
    up.push_n(4, Plan::status(503));
    up.push_n(6, Plan::status(200));
    for _ in 0..10 {
        send(&mut svc, None).await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 10, 4)
    );
    up.push(Plan::status(502)); // 5/11 < 0.5
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    up.push(Plan::status(504)); // 6/12 == 0.5
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(up.calls(), 22);

    // 4xx and 429 are not failures.
    handle.force_closed("");
    for s in [400, 401, 404, 429, 429, 400, 403, 422, 429, 404, 408, 501] {
        up.push(Plan::status(s));
        send(&mut svc, None).await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 12, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_no_longer_count() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(4));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push_n(3, Plan::status(500));
    for _ in 0..3 {
        send(&mut svc, None).await.unwrap();
    }
    assert_eq!(handle.snapshot("").unwrap().failures(), 3);
    // Still inside the window after 9 s: one more failure would open it.
    advance(Duration::from_secs(9)).await;
    assert_eq!(handle.snapshot("").unwrap().failures(), 3);
    // After the whole window, they are gone.
    advance(Duration::from_secs(1)).await;
    let snap = handle.snapshot("").unwrap();
    assert_eq!((snap.calls(), snap.failures()), (0, 0));

    up.push(Plan::status(500));
    for _ in 0..4 {
        send(&mut svc, None).await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 4, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_it() {
    let layer =
        CircuitBreakerLayer::with_config(config().min_calls(1000).consecutive_failures(Some(3)));
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    for s in [500, 502, 200, 503, 504] {
        up.push(Plan::status(s));
        send(&mut svc, None).await.unwrap();
    }
    assert_eq!(handle.snapshot("").unwrap().consecutive_failures(), 2);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    up.push(Plan::error(io::ErrorKind::ConnectionRefused));
    let err = send(&mut svc, None).await.unwrap_err();
    assert_eq!(err.code(), "connection_error");
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].reason(), TransitionReason::ConsecutiveFailures);
    assert_eq!(seen[0].open_duration(), Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_it() {
    let layer = CircuitBreakerLayer::with_config(
        config()
            .window(Duration::from_secs(60), 10)
            .min_calls(4)
            .slow_calls(Duration::from_secs(2), 0.5),
    );
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());
    let slow = |s| Plan::status(s).after(Duration::from_secs(3));

    // One slow call out of four: under the ratio.
    up.push(slow(200));
    up.push_n(3, Plan::status(200));
    let start = Instant::now();
    for _ in 0..4 {
        assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    }
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.slow_calls(), snap.failures()),
        (CircuitState::Closed, 1, 0)
    );

    // A call just at the threshold is not slow; one more slow call makes 2/6.
    up.push(Plan::status(200).after(Duration::from_secs(2)));
    up.push(slow(200));
    send(&mut svc, None).await.unwrap();
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.snapshot("").unwrap().slow_calls(), 2);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    // A third slow call: 3/7 < 0.5; a fourth: 4/8 opens it, although every
    // call succeeded.
    up.push(slow(200));
    up.push(slow(200));
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(
        seen.lock().unwrap()[0].reason(),
        TransitionReason::SlowCallRatio
    );
}

/// An inner service that is never ready after its first call.
#[derive(Clone)]
struct Stuck {
    polled: Arc<AtomicUsize>,
    called: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
}

impl Service<Request<()>> for Stuck {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Empty<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polled.fetch_add(1, Ordering::SeqCst);
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.called.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_waiting_for_the_inner_service() {
    let layer = CircuitBreakerLayer::with_config(config());
    let handle = layer.handle();
    let inner = Stuck {
        polled: Arc::default(),
        called: Arc::default(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let mut svc = layer.layer(inner.clone());
    handle.force_open("", Duration::from_secs(30));
    advance(Duration::from_millis(500)).await;

    // Ready at once, although the inner service is not.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(inner.called.load(Ordering::SeqCst), 0);
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(err.code(), "circuit_open");
    assert!(!err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_millis(29_500)));
    let res = err.to_response::<Bytes>();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    assert!(std::str::from_utf8(res.body())
        .unwrap()
        .contains("\"code\":\"circuit_open\""));

    // Once closed, an admitted call waits for the inner service in its future.
    handle.force_closed("");
    let svc = svc.ready().await.unwrap();
    let mut fut = std::pin::pin!(svc.call(Request::new(())));
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(inner.called.load(Ordering::SeqCst), 0);
    inner.ready.store(true, Ordering::SeqCst);
    let res = fut.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(inner.called.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_n_probes_and_successes_close_it() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(2).half_open_probes(2, 2));
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push_n(2, Plan::status(503));
    send(&mut svc, None).await.unwrap();
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    let err = send(&mut svc, None).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(up.calls(), 2);

    advance(Duration::from_secs(10)).await;
    // Two probes go through and stay in flight…
    let (tx1, plan1) = Plan::deferred();
    let (tx2, plan2) = Plan::deferred();
    up.push(plan1);
    up.push(plan2);
    let p1 = tokio::spawn({
        let mut svc = svc.clone();
        async move { send(&mut svc, None).await }
    });
    let p2 = tokio::spawn({
        let mut svc = svc.clone();
        async move { send(&mut svc, None).await }
    });
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(up.calls(), 4);
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.probes_in_flight()),
        (CircuitState::HalfOpen, 2)
    );
    // …and a third call is turned away.
    for _ in 0..3 {
        let err = send(&mut svc, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
    assert_eq!(up.calls(), 4);

    // One success is not enough; the second closes it.
    tx1.send(Plan::status(200)).unwrap();
    assert_eq!(p1.await.unwrap().unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::HalfOpen));
    tx2.send(Plan::status(200)).unwrap();
    assert_eq!(p2.await.unwrap().unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);

    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from(), t.to(), t.reason()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                CircuitState::Closed,
                CircuitState::Open,
                TransitionReason::FailureRatio
            ),
            (
                CircuitState::Open,
                CircuitState::HalfOpen,
                TransitionReason::OpenElapsed
            ),
            (
                CircuitState::HalfOpen,
                CircuitState::Closed,
                TransitionReason::ProbesSucceeded
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_it_for_longer() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push(Plan::status(500));
    send(&mut svc, None).await.unwrap();
    let open = |h: &tower_http_resilience::circuit_breaker::CircuitBreakerHandle| {
        h.snapshot("").unwrap().open_remaining()
    };
    assert_eq!(open(&handle), Some(Duration::from_secs(10)));

    // Each failed probe doubles the open time, up to the 60 s cap.
    for expected in [20, 40, 60, 60] {
        advance(open(&handle).unwrap()).await;
        up.push(Plan::error(io::ErrorKind::TimedOut));
        let err = send(&mut svc, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(open(&handle), Some(Duration::from_secs(expected)));
        assert_eq!(
            send(&mut svc, None).await.unwrap_err().retry_after(),
            Some(Duration::from_secs(expected))
        );
    }
    let calls = up.calls();
    assert_eq!(calls, 5);

    // A successful probe closes it and the next trip starts again at 10 s.
    advance(Duration::from_secs(60)).await;
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    assert_eq!(handle.snapshot("").unwrap().trips(), 0);
    up.push(Plan::status(500));
    send(&mut svc, None).await.unwrap();
    assert_eq!(open(&handle), Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn one_model_open_another_untouched() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(3)).key(ByExtension);
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push_n(3, Plan::status(503));
    for _ in 0..3 {
        send(&mut svc, Some("flaky-model")).await.unwrap();
    }
    assert_eq!(handle.state("flaky-model"), Some(CircuitState::Open));
    for _ in 0..5 {
        assert_eq!(send(&mut svc, Some("good-model")).await.unwrap(), 200);
        let err = send(&mut svc, Some("flaky-model")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    }
    assert_eq!(up.calls(), 8);
    let good = handle.snapshot("good-model").unwrap();
    assert_eq!(
        (good.state(), good.calls(), good.failures()),
        (CircuitState::Closed, 5, 0)
    );
    // A request without a key is not guarded.
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn keys_chain_with_or_closures_included() {
    let by_tenant = key_fn(|parts: &http::request::Parts| {
        let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
        Some(std::borrow::Cow::Borrowed(tenant))
    });
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1))
        .key(ByExtension.or(by_tenant).or(GlobalKey));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let call = |model: Option<&'static str>, tenant: Option<&'static str>| {
        let mut req = request();
        if let Some(m) = model {
            req.extensions_mut().insert(BreakerKey::new(m));
        }
        if let Some(t) = tenant {
            req.headers_mut().insert("x-tenant", t.parse().unwrap());
        }
        req
    };
    // The tenant's upstream fails: only the tenant's breaker opens.
    up.push(Plan::status(503));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(None, Some("acme")))
        .await;
    assert_eq!(res.unwrap().status(), 503);
    assert_eq!(handle.state("acme"), Some(CircuitState::Open));
    let err = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(None, Some("acme")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    // The model wins over the tenant; without either, the global key.
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(Some("gpt-4o"), Some("acme")))
        .await;
    assert_eq!(res.unwrap().status(), 200);
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(None, None))
        .await;
    assert_eq!(res.unwrap().status(), 200);
    let mut keys: Vec<_> = handle
        .snapshots()
        .iter()
        .map(|s| s.key().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["", "acme", "gpt-4o"]);
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_headers_is_a_failure() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let (tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    // Nothing is recorded at the headers.
    assert_eq!(handle.snapshot("").unwrap().calls(), 0);
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))))
        .await
        .unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: {}\n\n");
    assert_eq!(handle.snapshot("").unwrap().calls(), 0);
    tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")))
        .await
        .unwrap();
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(handle.state(""), Some(CircuitState::Open));

    // A stream that ends cleanly is a success, recorded at its end.
    handle.force_closed("");
    let (tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
        .await
        .unwrap();
    drop(tx);
    let collected = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(collected, "a");
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 1, 0)
    );
}

fn grpc_trailers(code: &'static str) -> Plan {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", code.parse().unwrap());
    Plan::status(200)
        .chunk(Duration::ZERO, Bytes::from_static(b"\0\0\0\0\0"))
        .trailers(trailers)
}

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_or_headers_counts() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(4).failure_ratio(0.75));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push(grpc_trailers("0"));
    up.push(grpc_trailers("5")); // NOT_FOUND: the upstream is fine
    up.push(grpc_trailers("14")); // UNAVAILABLE
    for _ in 0..3 {
        assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!((snap.calls(), snap.failures()), (3, 1));
    // Trailers-only answers carry the status in the headers.
    up.push(Plan::grpc("13"));
    up.push(Plan::grpc("4"));
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed)); // 2/4
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed)); // 3/5
    up.push(grpc_trailers("2")); // UNKNOWN
    send(&mut svc, None).await.unwrap();
    let snap = handle.snapshot("").unwrap();
    assert_eq!(snap.state(), CircuitState::Closed, "{snap:?}"); // 4/6
    up.push(grpc_trailers("14"));
    send(&mut svc, None).await.unwrap(); // 5/7
    up.push(grpc_trailers("14"));
    send(&mut svc, None).await.unwrap(); // 6/8 = 0.75
    assert_eq!(handle.state(""), Some(CircuitState::Open));
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_early_is_not_counted_and_gives_its_probe_back() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let (tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert!(!res.body().is_end_stream());
    drop(res);
    drop(tx);
    assert_eq!(handle.snapshot("").unwrap().calls(), 0);

    // In half-open, the probe whose body is dropped frees its slot.
    handle.force_open("", Duration::from_secs(5));
    advance(Duration::from_secs(5)).await;
    let (_tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(handle.snapshot("").unwrap().probes_in_flight(), 1);
    assert_eq!(
        send(&mut svc, None).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    drop(res);
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.probes_in_flight()),
        (CircuitState::HalfOpen, 0)
    );
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn errors_of_inner_layers_are_classified() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1000));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push(Plan::error(io::ErrorKind::ConnectionRefused));
    up.push(Plan::fail(|| {
        ApiError::timeout(
            tower_http_resilience::TimeoutPhase::Attempt,
            Duration::from_secs(30),
        )
        .into()
    }));
    up.push(Plan::fail(|| ApiError::new(ErrorKind::RateLimited).into()));
    up.push(Plan::fail(|| {
        ApiError::circuit_open(Duration::from_secs(1)).into()
    }));
    up.push(Plan::error(io::ErrorKind::Other));
    let mut kinds = Vec::new();
    for _ in 0..5 {
        kinds.push(send(&mut svc, None).await.unwrap_err().kind());
    }
    assert_eq!(
        kinds,
        [
            ErrorKind::Upstream,
            ErrorKind::Timeout,
            ErrorKind::RateLimited,
            ErrorKind::CircuitOpen,
            ErrorKind::Internal
        ]
    );
    // Refused, timed out and the unknown error count; the rate limit is a
    // success; another breaker's rejection is not recorded.
    let snap = handle.snapshot("").unwrap();
    assert_eq!((snap.calls(), snap.failures()), (4, 3));
    assert_eq!(svc.get_ref().calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(2)).classifier(
        |obs: Observation<'_>| match obs {
            Observation::Response { status, .. } if status == 429 => Verdict::Failure,
            Observation::Response { status, .. } if status == 500 => Verdict::Ignore,
            other => DefaultClassifier.classify(other),
        },
    );
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());
    for s in [500, 500, 200] {
        up.push(Plan::status(s));
        assert_eq!(send(&mut svc, None).await.unwrap(), s);
    }
    // The 500s were ignored: only the 200 is in the window.
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.calls(), snap.failures(), snap.state()),
        (1, 0, CircuitState::Closed)
    );
    // The 429 is a failure: one of two calls fails, the breaker opens.
    up.push(Plan::status(429));
    assert_eq!(send(&mut svc, None).await.unwrap(), 429);
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(
        send(&mut svc, None).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(up.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn every_service_and_clone_shares_the_state() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(2));
    let up = Upstream::default();
    let mut first = layer.layer(up.clone());
    let mut second = layer.layer(up.clone());
    let mut clone = first.clone();
    up.push_n(2, Plan::status(500));
    send(&mut first, None).await.unwrap();
    send(&mut clone, None).await.unwrap();
    assert_eq!(
        send(&mut second, None).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(second.handle().state(""), Some(CircuitState::Open));
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_handle_forces_resets_and_reports() {
    let layer = CircuitBreakerLayer::with_config(config()).key(ByExtension);
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    send(&mut svc, Some("a")).await.unwrap();
    handle.force_open("b", Duration::from_secs(7));
    assert_eq!(
        send(&mut svc, Some("b")).await.unwrap_err().retry_after(),
        Some(Duration::from_secs(7))
    );
    let mut keys: Vec<_> = handle
        .snapshots()
        .iter()
        .map(|s| (s.key().to_owned(), s.state()))
        .collect();
    keys.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        keys,
        [
            ("a".into(), CircuitState::Closed),
            ("b".into(), CircuitState::Open)
        ]
    );

    handle.force_closed("b");
    assert_eq!(send(&mut svc, Some("b")).await.unwrap(), 200);
    handle.force_open("b", Duration::from_secs(7));
    assert!(handle.reset("b"));
    assert!(!handle.reset("b"));
    assert_eq!(handle.state("b"), None);
    assert_eq!(send(&mut svc, Some("b")).await.unwrap(), 200);
    // The service dropped the breaker it remembered: the call landed in the
    // key's new breaker.
    assert_eq!(handle.snapshot("b").unwrap().calls(), 1);
    send(&mut svc, Some("b")).await.unwrap();
    assert_eq!(handle.snapshot("b").unwrap().calls(), 2);
    handle.reset_all();
    assert!(handle.is_empty());

    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.key().to_owned(), t.to(), t.reason()))
        .collect();
    assert_eq!(
        seen,
        [
            ("b".into(), CircuitState::Open, TransitionReason::Forced),
            ("b".into(), CircuitState::Closed, TransitionReason::Forced),
            ("b".into(), CircuitState::Open, TransitionReason::Forced),
            ("b".into(), CircuitState::Closed, TransitionReason::Reset),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_registry_stays_bounded_with_100_000_keys() {
    fn by_tenant(parts: &http::request::Parts) -> Option<std::borrow::Cow<'_, str>> {
        parts
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(Into::into)
    }
    let layer = CircuitBreakerLayer::with_config(
        config()
            .max_keys(1000)
            .idle_timeout(Duration::from_secs(60)),
    )
    .key(by_tenant);
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let mut most = 0;
    for i in 0..100_000u32 {
        let req = Request::builder()
            .header("x-tenant", format!("tenant-{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = ServiceExt::<Req>::ready(&mut svc)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        if i % 1000 == 0 {
            most = most.max(handle.len());
        }
    }
    most = most.max(handle.len());
    assert!(most <= 1000, "{most} keys");
    assert!(
        handle.len() >= 500,
        "the registry should be used, not emptied: {}",
        handle.len()
    );
    assert_eq!(up.calls(), 100_000);
    // The newest key is still known; the oldest was forgotten.
    assert!(handle.state("tenant-99999").is_some());
    assert!(handle.state("tenant-0").is_none());
    // Idle keys go once the idle timeout has passed, except the one the
    // service still holds for its next call; it goes with the service.
    advance(Duration::from_secs(61)).await;
    let before = handle.len();
    assert_eq!(handle.evict_idle(), before - 1);
    assert!(handle.state("tenant-99999").is_some());
    drop(svc);
    assert_eq!(handle.evict_idle(), 1);
    assert!(handle.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_threads_count_exactly() {
    // A window much longer than the test, a threshold that is never reached.
    let layer = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new()
            .window(Duration::from_secs(600), 10)
            .min_calls(u32::MAX)
            .consecutive_failures(None),
    );
    let handle = layer.handle();
    let failures_sent = Arc::new(AtomicUsize::new(0));
    let inner = tower::service_fn(|req: Request<()>| async move {
        let status = if req.headers().contains_key("x-fail") {
            503
        } else {
            200
        };
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    });
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let mut svc = svc.clone();
            let failures_sent = failures_sent.clone();
            tokio::spawn(async move {
                for i in 0..2_000u32 {
                    let mut req = Request::new(());
                    if (i + t) % 3 == 0 {
                        req.headers_mut().insert("x-fail", "1".parse().unwrap());
                        failures_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    let res = svc.ready().await.unwrap().call(req).await.unwrap();
                    let _ = res.into_body().collect().await.unwrap();
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(snap.state(), CircuitState::Closed);
    assert_eq!(snap.calls(), 32_000);
    assert_eq!(
        snap.failures(),
        failures_sent.load(Ordering::Relaxed) as u64
    );
}

#[tokio::test(start_paused = true)]
async fn transitions_are_traced_without_the_key() {
    let logs = support::capture_logs();

    let layer = CircuitBreakerLayer::with_config(config().min_calls(1)).key(ByExtension);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());
    up.push(Plan::status(500));
    send(&mut svc, Some("sk-live-0123456789abcdef"))
        .await
        .unwrap();
    advance(Duration::from_secs(10)).await;
    send(&mut svc, Some("sk-live-0123456789abcdef"))
        .await
        .unwrap();

    let text = logs.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("circuit breaker opened"),
        "{text}"
    );
    assert!(
        lines[0].contains("reason=failure ratio") && lines[0].contains("open_duration_ms=10000"),
        "{text}"
    );
    assert!(
        lines[1].contains("to=half-open") && lines[2].contains("to=closed"),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.contains("key=key#")), "{text}");
    assert!(!text.contains("sk-live"), "{text}");

    // Keys that are safe to show can be shown.
    let layer =
        CircuitBreakerLayer::with_config(config().min_calls(1).key_display(KeyDisplay::Plain))
            .key(ByExtension);
    let mut svc = layer.layer(up.clone());
    up.push(Plan::status(500));
    send(&mut svc, Some("gpt-4o")).await.unwrap();
    let text = logs.text();
    assert!(
        text.lines().last().unwrap().contains("key=gpt-4o"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn response_bodies_pass_through_unchanged() {
    let layer = CircuitBreakerLayer::new();
    let handle = layer.handle();
    let inner = tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let mut svc = layer.layer(inner);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.body().size_hint().exact(), Some(5));
    assert!(!res.body().is_end_stream());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    assert_eq!(handle.snapshot("").unwrap().calls(), 1);
}
