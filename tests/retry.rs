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

#[tokio::test(start_paused = true)]
async fn waits_equal_retry_after_seconds() {
    assert_eq!(
        waits_for(&[("retry-after", "2")]).await,
        [2000 * MS, 2000 * MS]
    );
    assert_eq!(
        waits_for(&[("retry-after", "0.25")]).await,
        [250 * MS, 250 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn waits_equal_retry_after_ms() {
    assert_eq!(
        waits_for(&[("retry-after-ms", "1500"), ("retry-after", "9")]).await,
        [1500 * MS, 1500 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn waits_until_an_http_date() {
    // HTTP-dates have whole seconds and are read against the wall clock:
    // a date 4 s ahead is a wait in (3 s, 4 s].
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(4));
    let waits = waits_for(&[("retry-after", &date)]).await;
    for w in waits {
        assert!(
            w > Duration::from_secs(2) && w <= Duration::from_secs(4),
            "{w:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_exhausted_rate_limit_to_reset() {
    let headers = [
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-remaining-requests", "12"),
        ("x-ratelimit-reset-tokens", "750ms"),
        ("x-ratelimit-remaining-tokens", "0"),
    ];
    assert_eq!(waits_for(&headers).await, [750 * MS, 750 * MS]);
    assert_eq!(
        waits_for(&[("x-ratelimit-reset-requests", "6.5s")]).await,
        [6500 * MS, 6500 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hint_above_the_cap_returns_at_once_with_the_hint() {
    let upstream = Upstream::always(respond(
        429,
        &[("retry-after", "120")],
        r#"{"error":{"message":"slow down"}}"#,
    ));
    let client = layer().layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
    assert_eq!(upstream.calls(), 1);
    assert_eq!(attempts(&res), 1);
    assert_eq!(
        res.headers()["retry-after"],
        "120",
        "the hint reaches the caller"
    );
    assert_eq!(text(res).await, r#"{"error":{"message":"slow down"}}"#);

    // The same for an error that carries a hint, and a configured cap.
    let upstream = Upstream::always(Plan::fail(|| {
        ApiError::new(ErrorKind::Unavailable)
            .with_retry_after(Duration::from_secs(11))
            .into()
    }));
    let client = layer()
        .max_retry_after(Duration::from_secs(10))
        .layer(upstream.clone());
    let err = client.oneshot(post("{}")).await.unwrap_err();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(11)));
    assert_eq!(err_attempts(&err), 1);
}

// ---------------------------------------------------------------------------
// One deadline.

#[tokio::test(start_paused = true)]
async fn no_wait_crosses_the_layer_deadline() {
    let upstream = Upstream::always(status(503));
    let client = layer()
        .max_retries(10)
        .backoff(Backoff::constant(Duration::from_secs(2)))
        .deadline(Duration::from_secs(5))
        .layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(upstream.times(), [Duration::ZERO, 2000 * MS, 4000 * MS]);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(4),
        "returned when the next wait would cross 5 s"
    );
    assert_eq!(attempts(&res), 3);
    assert!(
        upstream
            .received()
            .iter()
            .all(|s| Deadline::get(&s.extensions).is_some()),
        "inner layers see the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn no_wait_crosses_a_deadline_set_by_an_outer_layer() {
    let upstream = Upstream::always(respond(503, &[("retry-after", "2")], ""));
    let client = layer()
        .max_retries(10)
        .deadline(Duration::from_secs(60))
        .layer(upstream.clone());
    let mut req = post("{}");
    Deadline::after(Duration::from_secs(3)).set_earliest(req.extensions_mut());
    let start = Instant::now();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(upstream.times(), [Duration::ZERO, 2000 * MS]);
    assert_eq!(start.elapsed(), 2000 * MS);
    assert_eq!(attempts(&res), 2);

    // A hint that would cross it: the error comes back at once.
    let upstream = Upstream::always(respond(503, &[("retry-after", "30")], ""));
    let client = layer()
        .deadline(Duration::from_secs(10))
        .layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(
        (start.elapsed(), upstream.calls(), attempts(&res)),
        (Duration::ZERO, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_uses_up_the_deadline() {
    // Attempts that take 3 s each (the upstream waits before answering).
    #[derive(Clone)]
    struct Slow(Upstream);
    impl<B> Service<Request<ReplayBody<B>>> for Slow
    where
        ReplayBody<B>: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        type Response = Response<UpBody>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Response<UpBody>, BoxError>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<ReplayBody<B>>) -> Self::Future {
            let f = self.0.call(req);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                f.await
            })
        }
    }
    let upstream = Upstream::always(status(502));
    let client = layer()
        .max_retries(10)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .deadline(Duration::from_secs(10))
        .layer(Slow(upstream.clone()));
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    // 0–3 s attempt, wait to 4, 4–7 attempt, wait to 8, 8–11 attempt: the
    // attempt itself may run past the deadline (an outer total timeout cuts
    // it), but no wait starts that would end past it.
    assert_eq!(upstream.calls(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(11));
    assert_eq!(res.status(), 502);
}

// ---------------------------------------------------------------------------
// The budget.

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_retries_against_a_dead_upstream() {
    let upstream = Upstream::always(status(503));
    let floor_per_sec = 1;
    let ratio = 0.2;
    let layer = layer()
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(RetryBudget::new(
            Duration::from_secs(10),
            floor_per_sec,
            ratio,
        ));
    // Two services of the one layer, used through clones: one budget.
    let a = layer.layer(upstream.clone());
    let b = layer.layer(upstream.clone());
    let requests = 50;
    for i in 0..requests {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        let res = svc.oneshot(post("{}")).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let bound = requests as f64 * (1.0 + f64::from(ratio)) + f64::from(floor_per_sec) * 10.0;
    let total = upstream.calls();
    assert!(total as f64 <= bound, "{total} attempts > {bound}");
    assert_eq!(
        total, 70,
        "the whole budget is used: 50 + 10 floor + 20% of 50"
    );
    assert!(Arc::ptr_eq(a.budget(), b.budget()), "one budget");
    assert_eq!(a.budget().available(), 0);

    // Ten seconds later the window has moved on.
    tokio::time::advance(Duration::from_secs(11)).await;
    let res = a.clone().oneshot(post("{}")).await.unwrap();
    assert_eq!(attempts(&res), 4);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_spends_no_budget_and_is_not_retried() {
    let upstream = Upstream::always(Plan::fail(|| {
        ApiError::circuit_open(Duration::from_secs(5)).into()
    }));
    let layer = layer().budget(RetryBudget::new(Duration::from_secs(1), 1, 0.0));
    let client = layer.layer(upstream.clone());
    let err = client.clone().oneshot(post("{}")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(5)),
        "the breaker's retry-after is kept"
    );
    assert_eq!(err_attempts(&err), 1);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(client.budget().available(), 1, "nothing withdrawn");

    // Even a policy that wants everything retried cannot retry it.
    let upstream = Upstream::always(Plan::fail(|| {
        ApiError::circuit_open(Duration::from_secs(5)).into()
    }));
    let client = layer
        .clone()
        .policy(|_: &Outcome<'_>| Decision::Retry)
        .layer(upstream.clone());
    let err = client.oneshot(post("{}")).await.unwrap_err();
    assert_eq!((err.kind(), upstream.calls()), (ErrorKind::CircuitOpen, 1));

    // A 503, then the breaker opens: the rejection is the last outcome; a
    // rejection was not sent, so it is not an attempt.
    let upstream = Upstream::script([
        status(503),
        Plan::fail(|| ApiError::circuit_open(Duration::from_secs(5)).into()),
    ]);
    let client = layer.layer(upstream.clone());
    let err = client.oneshot(post("{}")).await.unwrap_err();
    assert_eq!(
        (err.code(), err_attempts(&err), upstream.calls()),
        ("circuit_open", 1, 2)
    );
    assert!(!err.is_retryable(), "retried: x-should-retry: false");
}

// ---------------------------------------------------------------------------
// Request body replay.

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_same_bytes() {
    let upstream = Upstream::script([status(503), status(500), status(200)]);
    let client = layer().layer(upstream.clone());
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let res = client.oneshot(post(body)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.bodies(),
        vec![Bytes::from_static(body.as_bytes()); 3]
    );
}

#[tokio::test(start_paused = true)]
async fn a_chunked_streaming_body_is_replayed_byte_for_byte() {
    // Chunks produced over (virtual) time, then trailers.
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i < 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let chunk = Bytes::from(vec![b'a' + i; 1000 + usize::from(i)]);
            Some((Ok::<_, BoxError>(Frame::data(chunk)), i + 1))
        } else if i == 6 {
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "42".parse().unwrap());
            Some((Ok(Frame::trailers(t)), i + 1))
        } else {
            None
        }
    });
    let req = Request::put("http://upstream.test/upload")
        .header("x-api-key", "sk-test-123456789")
        .body(StreamBody::new(chunks))
        .unwrap();
    let upstream = Upstream::script([status(502), status(503), respond(201, &[], "stored")]);
    let client = layer().layer(upstream.clone());
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(attempts(&res), 3);

    let expected: Vec<u8> = (0..6u8)
        .flat_map(|i| vec![b'a' + i; 1000 + usize::from(i)])
        .collect();
    let seen = upstream.received();
    assert_eq!(seen.len(), 3);
    for s in seen.iter() {
        assert_eq!(s.body, expected, "byte-identical");
        assert_eq!(s.trailers.as_ref().unwrap()["x-checksum"], "42");
        assert_eq!(s.method, Method::PUT);
        assert_eq!(s.uri, "http://upstream.test/upload");
        assert_eq!(s.headers["x-api-key"], "sk-test-123456789");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_the_upstream_did_not_finish_reading_is_replayed_whole() {
    let upstream = Upstream::script([Plan::status(503).reading(5), status(200)]);
    let client = layer().layer(upstream.clone());
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = ["hello ", "streaming ", "world"]
        .into_iter()
        .map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
        .collect();
    let req = Request::post("http://upstream.test/")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.bodies(),
        [
            Bytes::from_static(b"hello "),
            Bytes::from_static(b"hello streaming world")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_over_cap_body_is_sent_once_and_not_retried() {
    // Streamed with no size hint: found over the cap while it passes.
    let upstream = Upstream::always(respond(503, &[], "busy"));
    let client = layer().max_replay_body(16).layer(upstream.clone());
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
        .map(|_| Ok(Frame::data(Bytes::from_static(b"12345678"))))
        .collect();
    let req = Request::post("http://upstream.test/")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(
        upstream.bodies()[0].len(),
        32,
        "the one attempt got all of it"
    );
    assert_eq!(attempts(&res), 1);
    assert_eq!(
        (res.status().as_u16(), text(res).await),
        (503, Bytes::from_static(b"busy"))
    );

    // Known to be over the cap from its size: never buffered.
    let upstream = Upstream::always(status(503));
    let client = layer().max_replay_body(1024).layer(upstream.clone());
    let big = Request::post("http://upstream.test/")
        .body(Full::new(Bytes::from(vec![0u8; 4096])))
        .unwrap();
    let res = client.oneshot(big).await.unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_default_cap_takes_a_chat_request_with_an_image() {
    let upstream = Upstream::script([status(503), status(200)]);
    let client = RetryLayer::new()
        .jitter(Jitter::none())
        .layer(upstream.clone());
    let image = "A".repeat(3 * 1024 * 1024);
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}]}}"#
    );
    let req = Request::post("http://upstream.test/")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 2));
    assert_eq!(
        upstream.bodies(),
        [Bytes::from(body.clone()), Bytes::from(body)]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_stops_all_further_attempts() {
    let upstream = Upstream::always(status(503));
    let client = layer()
        .max_retries(10)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .layer(upstream.clone());
    let call = client.oneshot(post("{}"));
    // Give up half-way through the second wait.
    assert!(tokio::time::timeout(Duration::from_millis(1500), call)
        .await
        .is_err());
    assert_eq!(upstream.calls(), 2);
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::task::yield_now().await;
    assert_eq!(upstream.calls(), 2, "nothing is sent after the drop");
}

// ---------------------------------------------------------------------------
// The decision.

#[tokio::test(start_paused = true)]
async fn a_quota_429_is_not_retried_and_reaches_the_caller_whole() {
    // Longer than the peek limit, to show nothing is lost.
    let quota = format!(
        r#"{{"error":{{"message":"Quota insufficient","type":"insufficient_quota","code":"insufficient_quota"}},"padding":"{}"}}"#,
        "x".repeat(20_000)
    );
    let upstream = Upstream::always(Plan::json(429, quota.clone()));
    let client = layer().layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.body().size_hint().exact(), Some(quota.len() as u64));
    assert_eq!(text(res).await, quota.as_bytes());

    // The same body in 1 KiB chunks, as it arrives over a network: the
    // peek stops at its limit, mid-envelope, and still finds the quota code.
    let make: Arc<dyn Fn() -> UpBody + Send + Sync> = {
        let quota = Bytes::from(quota.clone());
        Arc::new(move || {
            let chunks: Vec<Result<Frame<Bytes>, BoxError>> = quota
                .chunks(1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync()
        })
    };
    let upstream = Upstream::always(Plan::status(429).body_with(move || make()));
    let res = layer()
        .peek_limit(64)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
    assert_eq!(text(res).await, quota.as_bytes());

    // A rate limit is retried; the last one comes back whole too.
    let limit = r#"{"error":{"message":"Rate limit exceeded","type":"rate_limit_error"}}"#;
    let upstream = Upstream::always(respond(429, &[], limit));
    let client = layer().layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (4, 4));
    assert_eq!(text(res).await, limit);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_error_body_is_handed_back_after_the_peek_timeout() {
    let make: Arc<dyn Fn() -> UpBody + Send + Sync> = Arc::new(|| {
        let first = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(
            Bytes::from_static(b"{\"error\":"),
        ))]);
        let rest = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Frame::data(Bytes::from_static(b"{}}")))
        });
        StreamBody::new(first.chain(rest)).boxed_unsync()
    });
    let upstream = Upstream::always(Plan::status(429).body_with(move || make()));
    let client = layer()
        .peek_timeout(Duration::from_secs(2))
        .layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
    assert_eq!(
        text(res).await,
        "{\"error\":{}}",
        "the caller still gets every byte"
    );
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_status() {
    let upstream = Upstream::always(respond(503, &[("x-should-retry", "false")], ""));
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));

    let upstream = Upstream::script([respond(400, &[("x-should-retry", "true")], ""), status(200)]);
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), upstream.calls()), (200, 2));
}

#[tokio::test(start_paused = true)]
async fn conflict_is_retried_by_default_and_can_be_made_final() {
    let upstream = Upstream::script([status(409), status(200)]);
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 2));

    let upstream = Upstream::always(status(409));
    let client = layer()
        .policy(DefaultPolicy::new().no_retry_status(StatusCode::CONFLICT))
        .layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (409, 1));
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_final() {
    for code in [400, 401, 402, 403, 404, 422] {
        let upstream = Upstream::always(status(code));
        let res = layer()
            .layer(upstream.clone())
            .oneshot(post("{}"))
            .await
            .unwrap();
        assert_eq!(
            (res.status().as_u16(), upstream.calls()),
            (code, 1),
            "{code}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn connection_errors_and_attempt_timeouts_are_retried() {
    let upstream = Upstream::always(Plan::fail(|| {
        Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }));
    let err = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (ErrorKind::Upstream, "connection_error")
    );
    assert_eq!((upstream.calls(), err_attempts(&err)), (4, 4));

    let upstream = Upstream::script([
        Plan::fail(|| ApiError::timeout(TimeoutPhase::Attempt, Duration::from_secs(30)).into()),
        Plan::fail(|| Box::new(tower::timeout::error::Elapsed::new())),
        respond(200, &[], "ok"),
    ]);
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!(
        (attempts(&res), text(res).await),
        (3, Bytes::from_static(b"ok"))
    );

    // An unrecognised inner error is retried as an internal error, and its
    // text stays out of the message.
    let upstream = Upstream::always(Plan::fail(|| "db password=hunter2".into()));
    let err = layer()
        .max_retries(1)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!((err.kind(), upstream.calls()), (ErrorKind::Internal, 2));
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test(start_paused = true)]
async fn a_custom_policy_decides() {
    let upstream = Upstream::script([status(418), status(418), status(200)]);
    let teapot = |o: &Outcome<'_>| {
        if o.status() == Some(StatusCode::IM_A_TEAPOT) && o.attempt() < 5 {
            Decision::Retry
        } else {
            Decision::DoNotRetry
        }
    };
    let res = layer()
        .policy(teapot)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 3));

    // A policy that reads the body sees its start, and the caller all of it.
    let upstream = Upstream::script([
        respond(500, &[], "transient: try again"),
        respond(500, &[], "fatal: corrupt"),
    ]);
    let by_body = |o: &Outcome<'_>| match o.body() {
        None => Decision::ReadBody,
        Some(b) if b.starts_with(b"transient") => Decision::Retry,
        Some(_) => Decision::DoNotRetry,
    };
    let res = layer()
        .policy(by_body)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (2, 2));
    assert_eq!(text(res).await, "fatal: corrupt");
}

#[tokio::test(start_paused = true)]
async fn max_retries_zero_sends_once() {
    let upstream = Upstream::always(status(503));
    let res = layer()
        .max_retries(0)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
}

// ---------------------------------------------------------------------------
// The commit point and what the caller sees.

#[tokio::test(start_paused = true)]
async fn a_streaming_success_is_never_re_requested() {
    // A 200 stream that fails after its first event: the caller sees the
    // failure in the body; the call is not sent again.
    let make: Arc<dyn Fn() -> UpBody + Send + Sync> = Arc::new(|| {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(
                b"data: {\"delta\":\"he\"}\n\n",
            ))),
            Err("upstream reset".into()),
        ];
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    });
    let upstream = Upstream::always(Plan::status(200).body_with(move || make()));
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{\"stream\":true}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 1));
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: {\"delta\":\"he\"}\n\n");
    assert!(body.frame().await.unwrap().is_err());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_the_request_head_again() {
    let upstream = Upstream::script([status(503), status(503), status(204)]);
    let client = layer()
        .attempt_header(http::HeaderName::from_static("x-stainless-retry-count"))
        .layer(upstream.clone());
    let mut req = post("{}");
    req.extensions_mut().insert(Marker("call-1"));
    req.headers_mut()
        .insert("authorization", "Bearer sk-secret-abcdef".parse().unwrap());
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 204);
    let seen = upstream.received();
    let counts: Vec<_> = seen
        .iter()
        .map(|s| {
            s.headers["x-stainless-retry-count"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);
    for s in seen.iter() {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.uri, "http://upstream.test/v1/chat/completions");
        assert_eq!(s.headers["authorization"], "Bearer sk-secret-abcdef");
        assert_eq!(s.headers["content-type"], "application/json");
        assert_eq!(
            s.extensions.get::<Marker>().cloned(),
            Some(Marker("call-1"))
        );
    }
}

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
async fn jitter_and_backoff_shape_the_waits() {
    let upstream = Upstream::always(status(500));
    let client = RetryLayer::new()
        .max_retries(5)
        .budget(RetryBudget::unlimited())
        .backoff(Backoff::exponential(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ))
        .jitter(Jitter::none())
        .layer(upstream.clone());
    client.oneshot(post("{}")).await.unwrap();
    let t = upstream.times();
    let waits: Vec<_> = t.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16], "min(2^n, 60) s");

    // The default: 500 ms doubling, each up to 25% shorter.
    let upstream = Upstream::always(status(500));
    let client = RetryLayer::new()
        .budget(RetryBudget::unlimited())
        .layer(upstream.clone());
    client.oneshot(post("{}")).await.unwrap();
    let t = upstream.times();
    for (n, w) in t.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let full = Duration::from_millis(500) * 2u32.pow(n as u32);
        assert!(
            w <= full && w >= full * 3 / 4,
            "wait {n}: {w:?} vs {full:?}"
        );
    }
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
