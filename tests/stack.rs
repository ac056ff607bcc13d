//! The standard stack, built both ways — with `ResilienceServiceBuilderExt`
//! on a `ServiceBuilder` and with `ResilienceLayer` — and called, on a paused
//! clock, with tower's `full` feature on (as most applications have it).

#![cfg(feature = "stack")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use support::{Plan, Upstream};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http_resilience::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use tower_http_resilience::retry::{Attempts, Backoff, Jitter, RetryLayer};
use tower_http_resilience::stack::ResilienceServiceBuilderExt;
use tower_http_resilience::{ApiError, ResilienceConfig, ResilienceLayer, TimeoutPhase};

fn post() -> Request<Full<Bytes>> {
    Request::post("http://upstream.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
        .unwrap()
}

fn attempts<B>(res: &Response<B>) -> u32 {
    Attempts::of(res.extensions()).get()
}

#[tokio::test(start_paused = true)]
async fn a_stack_built_with_the_extension_retries_and_answers() {
    let up = Upstream::new().first([Plan::status(503), Plan::reset()]);
    let client = ServiceBuilder::new()
        .normalize_client()
        .total_timeout(Duration::from_secs(60))
        .retry_with_backoff(2)
        .circuit_breaker(CircuitBreakerConfig::default())
        .attempt_timeout(Duration::from_secs(30))
        .service(up.clone());

    let res = client.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 3);
    assert_eq!(up.calls(), 3);
    assert!(up.bodies().iter().all(|b| b == "{\"model\":\"m\"}"));
}

#[tokio::test(start_paused = true)]
async fn a_stack_built_with_the_layer_retries_and_answers() {
    let up = Upstream::new().first([Plan::status(503), Plan::reset()]);
    let client = ServiceBuilder::new()
        .layer(ResilienceLayer::new())
        .service(up.clone());

    let res = client.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 3);
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn both_ways_fail_as_an_api_error_after_the_last_retry() {
    let up = Upstream::always(Plan::json(
        500,
        r#"{"error":{"message":"boom","type":"server_error","code":"internal_error"}}"#,
    ));
    let err: ApiError = ServiceBuilder::new()
        .normalize_client()
        .retry_with_backoff(1)
        .service(up.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (500, "internal_error"));
    assert_eq!(Attempts::of(err.extensions()).get(), 2);
    assert_eq!(up.calls(), 2);

    let up = Upstream::always(Plan::status(500));
    let err = ResilienceLayer::new()
        .layer(up.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (500, "internal_error"));
    assert_eq!(Attempts::of(err.extensions()).get(), 4);
    assert_eq!(up.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_extension_s_attempt_timeout_cuts_a_hung_attempt_and_retries() {
    let up = Upstream::new().first([Plan::hang()]);
    let client = ServiceBuilder::new()
        .normalize_client()
        .total_timeout(Duration::from_secs(60))
        .layer(
            RetryLayer::new()
                .backoff(Backoff::constant(Duration::from_secs(1)))
                .jitter(Jitter::none()),
        )
        .attempt_timeout(Duration::from_secs(10))
        .service(up.clone());

    let start = tokio::time::Instant::now();
    let res = client.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 2);
    assert_eq!(up.times(), [Duration::ZERO, Duration::from_secs(11)]);
    assert_eq!(start.elapsed(), Duration::from_secs(11));
    assert_eq!(up.cancelled(), 1, "the hung attempt was dropped");
}

#[tokio::test(start_paused = true)]
async fn the_extension_s_total_timeout_bounds_every_attempt_and_the_body() {
    let client = |up: &Upstream| {
        ServiceBuilder::new()
            .normalize_client()
            .total_timeout(Duration::from_secs(5))
            .retry_with_backoff(3)
            .attempt_timeout(Duration::from_secs(2))
            .service(up.clone())
    };

    // Every attempt hangs: the retries stop at the total.
    let up = Upstream::always(Plan::hang());
    let start = tokio::time::Instant::now();
    let err = client(&up).oneshot(post()).await.unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (504, "timeout"));
    assert!(
        start.elapsed() <= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(up.calls() >= 2, "{} attempts", up.calls());

    // Headers in time, then the body stalls: the total ends it.
    let up = Upstream::always(Plan::status(200).chunk(Duration::ZERO, "{").then_stall());
    let start = tokio::time::Instant::now();
    let res = client(&up).oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    let err = res.into_body().collect().await.unwrap_err();
    let err = err
        .downcast::<ApiError>()
        .expect("the body fails with an ApiError");
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Total));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_extension_s_breaker_opens_and_fails_fast() {
    let up = Upstream::always(Plan::status(503));
    let client = ServiceBuilder::new()
        .normalize_client()
        .circuit_breaker(CircuitBreakerConfig::default())
        .service(up.clone());
    let handle = client.get_ref().handle();
    for _ in 0..10 {
        let err = client.clone().oneshot(post()).await.unwrap_err();
        assert_eq!(err.code(), "service_unavailable");
    }
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    let err = client.oneshot(post()).await.unwrap_err();
    assert_eq!(err.code(), "circuit_open");
    assert_eq!(up.calls(), 10, "an open breaker does not call the upstream");
}

#[tokio::test(start_paused = true)]
async fn the_server_flavours_answer_every_failure_as_the_envelope() {
    let up = Upstream::always(Plan::status(502));
    let server = ServiceBuilder::new()
        .normalize()
        .retry_with_backoff(0)
        .service(up.clone());
    let res = server.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 502);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(support::envelope(&body)["code"], "upstream_error");

    let up = Upstream::always(Plan::status(502));
    let server = ResilienceConfig::default()
        .max_retries(0)
        .build()
        .unwrap()
        .server()
        .layer(up.clone());
    let res = server.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-should-retry"], "true");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(support::envelope(&body)["code"], "upstream_error");
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn map_retry_and_map_timeout_shape_the_stack_the_layer_builds() {
    let up = Upstream::always(Plan::status(503));
    let layer = ResilienceLayer::new().map_retry(|r| {
        r.max_retries(1)
            .backoff(Backoff::constant(Duration::from_secs(2)))
            .jitter(Jitter::none())
    });
    let err = layer.layer(up.clone()).oneshot(post()).await.unwrap_err();
    assert_eq!(Attempts::of(err.extensions()).get(), 2);
    assert_eq!(up.times(), [Duration::ZERO, Duration::from_secs(2)]);

    let up = Upstream::always(Plan::status(200).chunk(Duration::ZERO, "{").then_stall());
    let layer = ResilienceLayer::new().map_timeout(|t| t.total_timeout(Duration::from_secs(7)));
    let start = tokio::time::Instant::now();
    let res = layer.layer(up).oneshot(post()).await.unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.to_string().contains("7s"), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(7));
}

/// In the standard stack the timeout's body clock sits outside the breaker:
/// a stream that stalls after its headers must still count against the
/// upstream when the idle clock ends it.
#[tokio::test(start_paused = true)]
async fn a_stream_ended_by_the_idle_clock_counts_against_the_breaker() {
    let config = ResilienceConfig::default()
        .breaker_min_calls(2)
        .stream_idle_timeout(Duration::from_secs(5));
    let (svc, handle) = stalling_stack(config);
    for _ in 0..2 {
        let res = svc.clone().oneshot(streaming_request()).await.unwrap();
        let err = res
            .into_body()
            .collect()
            .await
            .expect_err("the idle clock ends the stream");
        assert!(err.to_string().contains("idle"), "{err}");
    }
    assert_eq!(handle.state("upstream.test"), Some(CircuitState::Open));
}

/// The other side of the same rule: a caller who drops a stream midway (the
/// user pressed stop) says nothing about the upstream and is not counted.
#[tokio::test(start_paused = true)]
async fn a_stream_the_caller_drops_does_not_count_against_the_breaker() {
    let (svc, handle) = stalling_stack(ResilienceConfig::default().breaker_min_calls(2));
    for _ in 0..3 {
        let res = svc.clone().oneshot(streaming_request()).await.unwrap();
        let mut body = std::pin::pin!(res.into_body());
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "data: {}\n\n");
        // Gone before the end, well within every clock.
    }
    assert_eq!(handle.state("upstream.test"), Some(CircuitState::Closed));
    assert_eq!(handle.snapshot("upstream.test").unwrap().failures(), 0);
}

/// The standard stack around an upstream whose streams send one event and
/// then fall silent.
fn stalling_stack(
    config: ResilienceConfig,
) -> (
    tower_http_resilience::ClientStack<Upstream>,
    tower_http_resilience::circuit_breaker::CircuitBreakerHandle,
) {
    let layer = config.build().unwrap();
    let handle = layer.breaker_handle();
    let up = Upstream::always(Plan::sse(&["data: {}\n\n"]).then_stall());
    (layer.layer(up), handle)
}

fn streaming_request() -> Request<Full<Bytes>> {
    Request::post("http://upstream.test/v1/chat/completions")
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// Ready for one call, then never again (a pool that lost its connections).
#[derive(Clone)]
struct ReadyOnce<S> {
    inner: S,
    used: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S, R> tower::Service<R> for ReadyOnce<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        if self.used.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.used.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_leans_on_the_attempt_timer_and_still_ends_the_call() {
    // The attempt's timer fires first: the total arms none while it runs,
    // then its own once the attempt is over and nothing else would wake the
    // call (the service never gets ready for a retry).
    let client = |up: &Upstream| {
        ServiceBuilder::new()
            .normalize_client()
            .total_timeout(Duration::from_secs(5))
            .layer(RetryLayer::new().backoff(Backoff::constant(Duration::ZERO)))
            .layer_fn(|inner| ReadyOnce {
                inner,
                used: Default::default(),
            })
            .attempt_timeout(Duration::from_secs(2))
            .service(up.clone())
    };
    let up = Upstream::always(Plan::hang());
    let start = tokio::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), client(&up).oneshot(post())).await;
    let err = ended.expect("the total ends the call").unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Total));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(up.calls(), 1);

    // A stream's first-byte clock (in the attempt loop) gives up on the
    // attempt before its own timer fires, in the same poll that timer was
    // noted in: the total does not lean on the dropped timer.
    let streaming = || {
        let mut req = post();
        req.headers_mut()
            .insert("accept", "text/event-stream".parse().unwrap());
        req
    };
    let client = ServiceBuilder::new()
        .normalize_client()
        .layer(
            tower_http_resilience::TimeoutLayer::new()
                .stream_first_byte_timeout(Duration::from_secs(1))
                .stream_timeout(Duration::from_secs(5)),
        )
        .layer(RetryLayer::new().backoff(Backoff::constant(Duration::ZERO)))
        .layer_fn(|inner| ReadyOnce {
            inner,
            used: Default::default(),
        })
        .attempt_timeout(Duration::from_secs(2))
        .service(up.clone());
    let up_calls = up.calls();
    let start = tokio::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), client.oneshot(streaming())).await;
    let err = ended.expect("the total ends the call").unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Total));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(up.calls(), up_calls + 1);
}
