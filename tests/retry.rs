//! The retry layer against scripted upstreams, on a paused clock.

#![cfg(feature = "retry")]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::Value;
use support::{Plan, UpBody, Upstream};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::deadline::Deadline;
use tower_http_resilience::retry::{
    Attempts, Backoff, Decision, DefaultPolicy, Jitter, Outcome, ReplayBody, RetryBudget,
    RetryLayer,
};
use tower_http_resilience::{ApiError, BoxError, ErrorKind, TimeoutPhase};

/// A response with these headers and body.
fn respond(code: u16, headers: &[(&str, &str)], body: &str) -> Plan {
    headers
        .iter()
        .fold(Plan::status(code), |plan, (k, v)| plan.header(k, v))
        .body(Bytes::copy_from_slice(body.as_bytes()))
}

/// A response with this status and an empty body.
fn status(code: u16) -> Plan {
    Plan::status(code)
}

#[derive(Clone, Debug, PartialEq)]
struct Marker(&'static str);

/// A layer with predictable waits: no jitter, a constant 100 ms backoff,
/// no budget.
fn layer() -> RetryLayer {
    RetryLayer::new()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .jitter(Jitter::none())
        .budget(RetryBudget::unlimited())
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("http://upstream.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn attempts<T>(res: &Response<T>) -> u32 {
    let n = Attempts::of(res.extensions()).get();
    // Only a response that took more than one attempt is marked.
    assert_eq!(res.extensions().get::<Attempts>().is_some(), n > 1);
    n
}

fn err_attempts(err: &ApiError) -> u32 {
    err.extensions()
        .get::<Attempts>()
        .expect("attempts extension")
        .get()
}

async fn text<B: Body>(res: Response<B>) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

const MS: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------
// The fixture: every provider error, retried or not.

#[tokio::test(start_paused = true)]
async fn every_fixture_case_gets_the_expected_number_of_attempts() {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/provider-errors.json"
    ))
    .unwrap();
    let fixture: Value = serde_json::from_str(&raw).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let code = case["status"].as_u64().unwrap() as u16;
        let body = case["body"].as_str().unwrap();
        let headers: Vec<(&'static str, String)> = case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    &*Box::leak(k.clone().into_boxed_str()),
                    v.as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let retryable = case["expect"]["retryable"].as_bool().unwrap();
        let hint = case["expect"]["retry_after_s"]
            .as_u64()
            .map(Duration::from_secs);

        let upstream = Upstream::always(
            headers
                .iter()
                .fold(Plan::status(code), |plan, (k, v)| plan.header(k, v))
                .body(Bytes::copy_from_slice(body.as_bytes())),
        );
        let client = layer().layer(upstream.clone());
        let start = Instant::now();
        let res = client.oneshot(post("{}")).await.unwrap();

        let expected = if retryable { 4 } else { 1 };
        assert_eq!(
            upstream.calls(),
            expected,
            "{name}: attempts at the upstream"
        );
        assert_eq!(
            attempts(&res),
            expected as u32,
            "{name}: Attempts extension"
        );
        assert_eq!(
            res.status().as_u16(),
            code,
            "{name}: the last response, as it was"
        );
        for (k, v) in &headers {
            assert_eq!(res.headers()[*k], v.as_str(), "{name}: header {k}");
        }
        let waited = start.elapsed();
        assert_eq!(text(res).await, body.as_bytes(), "{name}: the body, intact");
        let expected_wait = match (retryable, hint) {
            (false, _) => Duration::ZERO,
            (true, Some(h)) => h * 3,
            (true, None) => 300 * MS,
        };
        assert_eq!(waited, expected_wait, "{name}: virtual time waited");
    }
}

// ---------------------------------------------------------------------------
// Server hints.

async fn waits_for(headers: &[(&'static str, &str)]) -> Vec<Duration> {
    let upstream = Upstream::script([
        respond(429, headers, ""),
        respond(429, headers, ""),
        status(200),
    ]);
    // A long, fully jittered backoff: a hint must replace it entirely.
    let client = layer()
        .backoff(Backoff::constant(Duration::from_secs(40)))
        .jitter(Jitter::full())
        .layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 3);
    let t = upstream.times();
    vec![t[1] - t[0], t[2] - t[1]]
}

// ---------------------------------------------------------------------------
// One deadline.

// ---------------------------------------------------------------------------
// The budget.

// ---------------------------------------------------------------------------
// Request body replay.

// ---------------------------------------------------------------------------
// The decision.

// ---------------------------------------------------------------------------
// The commit point and what the caller sees.

#[tokio::test(start_paused = true)]
async fn each_retry_is_traced_without_secrets() {
    let logs = support::capture_logs();

    let upstream = Upstream::script([
        respond(503, &[], "sk-body-secret"),
        Plan::fail(|| {
            Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ))
        }),
        status(200),
    ]);
    let mut req = Request::post("http://upstream.test/v1/x?key=sk-query-secret")
        .header("authorization", "Bearer sk-header-secret")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    req.extensions_mut().insert(Marker("m"));
    let res = layer().layer(upstream).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);

    let out = logs.text();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("retrying")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("attempt=2")
            && lines[0].contains("delay_ms=100")
            && lines[0].contains("reason=status 503"),
        "{out}"
    );
    assert!(
        lines[1].contains("attempt=3") && lines[1].contains("reason=error connection_error"),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn readiness_is_reserved_and_errors_are_normalised() {
    // The service is cloned for the future: the inner service used for later
    // attempts is polled ready before each.
    let upstream = Upstream::script([status(503), status(200)]);
    let mut svc = layer().layer(upstream.clone());
    let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
        .await
        .unwrap();
    let res = ready.call(post("{}")).await.unwrap();
    assert_eq!(attempts(&res), 2);

    // An inner readiness error becomes an ApiError.
    #[derive(Clone)]
    struct NotReady;
    impl Service<Request<ReplayBody<Full<Bytes>>>> for NotReady {
        type Response = Response<Full<Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<Full<Bytes>>, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "no",
            ))))
        }
        fn call(&mut self, _: Request<ReplayBody<Full<Bytes>>>) -> Self::Future {
            unreachable!("never ready")
        }
    }
    let err = layer()
        .layer(NotReady)
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (ErrorKind::Upstream, "connection_error")
    );

    // An io timeout from the call is retried as a timeout.
    let err = layer()
        .layer(tower::service_fn(
            |_: Request<ReplayBody<Full<Bytes>>>| async {
                Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "t",
                ))
            },
        ))
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!((err.kind(), err_attempts(&err)), (ErrorKind::Timeout, 4));
}

mod retry {
    mod policy;
    mod replay;
    mod waits;
}
