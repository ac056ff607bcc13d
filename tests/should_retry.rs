//! No retry multiplication: an error that leaves after the stack spent its
//! retries on the call, or whose retry the budget or the deadline refused,
//! tells its caller not to retry it (`x-should-retry: false`, a
//! `retry-after` kept); a caller that obeys, as the official OpenAI SDKs
//! do, then never multiplies the attempts. On a paused clock, against a
//! scripted upstream.

#![cfg(feature = "stack")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{Plan, Upstream};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::retry::{Attempts, RetryBudget};
use tower_http_resilience::stack::ResilienceLayer;
use tower_http_resilience::{ApiError, ResilienceConfig};

/// The body of the upstream's error answers.
const DOWN: &str = r#"{"error":{"message":"down","type":"x","code":"y"}}"#;

fn request() -> Request<Full<Bytes>> {
    Request::post("http://upstream.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(r#"{"model":"m"}"#)))
        .unwrap()
}

/// What a server stack (a gateway) answered: status and headers.
async fn answer(layer: ResilienceLayer, upstream: Upstream) -> (StatusCode, HeaderMap) {
    let res = layer
        .server()
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    body.collect().await.unwrap();
    (parts.status, parts.headers)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// A caller that retries as the official OpenAI SDKs do (openai-python's
/// `_should_retry` and `_calculate_retry_timeout`): `x-should-retry` is
/// obeyed; without it 408, 409, 429 and 5xx are retried; a `retry-after`
/// over two minutes means no retry, a shorter one is the wait; otherwise
/// 0.5 s doubling (the longest wait: the jitter only shortens it). Returns
/// the last status and the attempts the caller made.
async fn sdk_call<S, B>(mut gateway: S, max_retries: u32) -> (StatusCode, u32)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let res = gateway
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        body.collect().await.unwrap();
        let status = parts.status;
        let retry_after = header(&parts.headers, "retry-after").and_then(|v| v.parse::<u64>().ok());
        let should_retry = match header(&parts.headers, "x-should-retry") {
            _ if retry_after.is_some_and(|s| s > 120) => false,
            Some("true") => true,
            Some("false") => false,
            _ => matches!(status.as_u16(), 408 | 409 | 429) || status.as_u16() >= 500,
        };
        if status.is_success() || !should_retry || attempts > max_retries {
            return (status, attempts);
        }
        let backoff =
            Duration::from_millis(500 * 2u64.pow(attempts - 1)).min(Duration::from_secs(8));
        let wait = match retry_after {
            Some(s) if s > 0 => Duration::from_secs(s),
            _ => backoff,
        };
        tokio::time::sleep(wait).await;
    }
}

/// The gateway's stack: `--max-retries 3 --timeout 20s --attempt-timeout 10s`.
fn gateway() -> ResilienceLayer {
    ResilienceConfig::default()
        .total_timeout(Duration::from_secs(20))
        .attempt_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const SDK_MAX_RETRIES: u32 = 2;

#[tokio::test(start_paused = true)]
async fn an_sdk_with_its_default_retries_never_multiplies_the_gateways() {
    // An always-503 upstream that asks for a second.
    let busy = Plan::status(503)
        .header("retry-after", "1")
        .body("overloaded");
    let upstream = Upstream::always(busy);
    let stack = gateway().server().layer(upstream.clone());
    let start = Instant::now();
    let (status, sdk_attempts) = sdk_call(stack, SDK_MAX_RETRIES).await;
    assert_eq!(
        (status.as_u16(), sdk_attempts),
        (503, 1),
        "the SDK did not retry"
    );
    assert_eq!(upstream.calls(), 4, "1 + --max-retries upstream attempts");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "three waits of one second"
    );

    // An upstream that fails, then hangs: the total timeout ends the call.
    let upstream = Upstream::always(Plan::hang()).first([Plan::json(503, DOWN)]);
    let stack = gateway().server().layer(upstream.clone());
    let start = Instant::now();
    let (status, sdk_attempts) = sdk_call(stack, SDK_MAX_RETRIES).await;
    assert_eq!((status.as_u16(), sdk_attempts), (504, 1));
    // A 503, an attempt cut by the attempt timeout (10 s), a third cut by
    // the total.
    assert_eq!(upstream.calls(), 3);
    assert!(
        start.elapsed() <= Duration::from_secs(21),
        "within --timeout + 1 s: {:?}",
        start.elapsed()
    );

    // A gateway that does not retry leaves the retrying to the SDK.
    let upstream = Upstream::always(Plan::json(503, DOWN));
    let layer = ResilienceConfig::default().max_retries(0).build().unwrap();
    let stack = layer.server().layer(upstream.clone());
    let (status, sdk_attempts) = sdk_call(stack, SDK_MAX_RETRIES).await;
    assert_eq!((status.as_u16(), sdk_attempts), (503, 3));
    assert_eq!(upstream.calls(), 3, "one upstream attempt per SDK attempt");
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_stack_retried_says_do_not_retry_and_keeps_its_wait() {
    let busy = Plan::status(503)
        .header("retry-after", "2")
        .header("x-should-retry", "true")
        .body("busy");
    let (status, headers) = answer(gateway(), Upstream::always(busy)).await;
    assert_eq!(status, 503);
    assert_eq!(
        header(&headers, "x-should-retry"),
        Some("false"),
        "the upstream's true is overruled"
    );
    assert_eq!(header(&headers, "retry-after"), Some("2"));

    // Also when the last attempt's answer is the canonical envelope.
    let envelope = r#"{"error":{"message":"the service is unavailable","type":"service_unavailable","param":null,"code":"service_unavailable"}}"#;
    let plan = Plan::json(503, envelope);
    let (status, headers) = answer(gateway(), Upstream::always(plan)).await;
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));

    // A later attempt that asks for too long a wait: the stack already
    // retried; the wait stays for the caller to come back after.
    let long = Plan::status(429)
        .header("retry-after", "120")
        .body("slow down");
    let upstream = Upstream::always(Plan::status(200)).first([Plan::json(503, DOWN), long]);
    let (status, headers) = answer(gateway(), upstream).await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));
    assert_eq!(header(&headers, "retry-after"), Some("120"));
}

#[tokio::test(start_paused = true)]
async fn a_retry_refused_by_the_budget_or_the_deadline_says_do_not_retry() {
    // An empty budget: the first failure may not be retried.
    let layer =
        gateway().map_retry(|r| r.budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0)));
    let upstream = Upstream::always(Plan::json(503, DOWN));
    let (status, headers) = answer(layer, upstream.clone()).await;
    assert_eq!((status.as_u16(), upstream.calls()), (503, 1));
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));

    // A wait the call's deadline has no room for.
    let layer = ResilienceConfig::default()
        .total_timeout(Duration::from_secs(3))
        .attempt_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let later = Plan::status(503).header("retry-after", "5").body("later");
    let upstream = Upstream::always(later);
    let (status, headers) = answer(layer, upstream.clone()).await;
    assert_eq!((status.as_u16(), upstream.calls()), (503, 1));
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));
    assert_eq!(header(&headers, "retry-after"), Some("5"));
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_stack_did_not_retry_is_answered_as_before() {
    // Retrying is off: the caller may retry.
    let layer = ResilienceConfig::default().max_retries(0).build().unwrap();
    let (status, headers) = answer(layer, Upstream::always(Plan::json(503, DOWN))).await;
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "x-should-retry"), Some("true"));

    // A wait longer than max_retry_after on the first attempt: the caller
    // may come back after it.
    let long = Plan::status(429)
        .header("retry-after", "120")
        .body("slow down");
    let (status, headers) =
        answer(gateway(), Upstream::always(Plan::status(200)).first([long])).await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "x-should-retry"), Some("true"));
    assert_eq!(header(&headers, "retry-after"), Some("120"));

    // A failure the policy never retries.
    let (status, headers) = answer(
        gateway(),
        Upstream::always(Plan::status(200)).first([Plan::json(400, DOWN)]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));
}

#[tokio::test(start_paused = true)]
async fn a_client_reads_the_same_answer_from_the_api_error() {
    let fail = |layer: ResilienceLayer, upstream: Upstream| async move {
        let err: ApiError = layer.layer(upstream).oneshot(request()).await.unwrap_err();
        err
    };
    let err = fail(gateway(), Upstream::always(Plan::json(503, DOWN))).await;
    assert_eq!(Attempts::of(err.extensions()).get(), 4);
    assert!(!err.is_retryable());
    assert_eq!(err.hints().should_retry(), Some(false));

    let layer = ResilienceConfig::default().max_retries(0).build().unwrap();
    let err = fail(layer, Upstream::always(Plan::json(503, DOWN))).await;
    assert_eq!(Attempts::of(err.extensions()).get(), 1);
    assert!(err.is_retryable());
}
