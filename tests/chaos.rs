//! Chaos: a few thousand requests, 32 at a time, through the standard server
//! stack (the gateway's) against an upstream that answers at random — 429s
//! with and without hints, 500, 502, 503, resets, calls that hang before
//! their headers and streams that stall — on tokio's paused clock.
//!
//! Every request must finish within its deadline (virtual time), every
//! failure must be the canonical envelope (or the last SSE event of a
//! stream), every upstream success must reach the client exactly once, and
//! the upstream must see no more attempts than the retry budget allows.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::{BoxError, ResilienceConfig};

const REQUESTS: usize = 3000;
const CONCURRENCY: usize = 32;

#[derive(Default)]
struct Ledger {
    attempts: AtomicU64,
    /// Ids of complete successful answers the upstream sent.
    successes: Mutex<HashSet<String>>,
}

type UpBody = BoxBody<Bytes, BoxError>;

fn full(status: u16, headers: &[(&str, String)], body: String) -> Response<UpBody> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

async fn upstream(
    req: Request<StackBody<Full<Bytes>>>,
    rng: Arc<Mutex<fastrand::Rng>>,
    ledger: Arc<Ledger>,
) -> Result<Response<UpBody>, BoxError> {
    let n = ledger.attempts.fetch_add(1, Ordering::SeqCst);
    let streaming = req.headers().contains_key("accept");
    let roll = rng.lock().unwrap().u32(0..100);
    let err = |status: u16, code: &str| {
        full(
            status,
            &[("content-type", "application/json".into())],
            format!(r#"{{"error":{{"message":"chaos {code}","type":"x","code":"{code}"}}}}"#),
        )
    };
    Ok(match roll {
        0..=9 => {
            let ms = rng.lock().unwrap().u32(50..3000);
            full(429, &[("retry-after-ms", ms.to_string())], String::new())
        }
        10..=12 => full(
            429,
            &[("x-ratelimit-reset-requests", "1s".into())],
            "Rate limit".into(),
        ),
        13..=14 => full(429, &[("retry-after", "120".into())], String::new()), // above max_retry_after
        15..=22 => err(500, "internal_error"),
        23..=29 => full(
            502,
            &[("content-type", "text/html".into())],
            "<html>502</html>".into(),
        ),
        30..=36 => err(503, "service_unavailable"),
        37..=40 => {
            return Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )))
        }
        41..=42 => futures_util::future::pending().await, // hangs before its headers
        43..=44 if streaming => {
            // Headers and one event, then silence.
            let events = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from(
                "data: {}\n\n",
            )))])
            .chain(futures_util::stream::pending());
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(events)))
                .unwrap()
        }
        _ => {
            let id = format!("ok-{n}");
            ledger.successes.lock().unwrap().insert(id.clone());
            if streaming {
                let body = format!("data: {{\"id\":\"{id}\"}}\n\ndata: [DONE]\n\n");
                let frames = futures_util::stream::iter(
                    body.into_bytes()
                        .chunks(7)
                        .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::copy_from_slice(c))))
                        .collect::<Vec<_>>(),
                );
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(BodyExt::boxed(StreamBody::new(frames)))
                    .unwrap()
            } else {
                full(
                    200,
                    &[("content-type", "application/json".into())],
                    format!(r#"{{"id":"{id}"}}"#),
                )
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn thousands_of_requests_against_a_chaotic_upstream() {
    let config = ResilienceConfig::default();
    let layer = config.clone().build().unwrap().server();
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(0x5eed)));
    let ledger = Arc::new(Ledger::default());
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn({
            let (rng, ledger) = (rng.clone(), ledger.clone());
            move |req| upstream(req, rng.clone(), ledger.clone())
        }),
    );

    let started = Instant::now();
    let client_ids = Arc::new(Mutex::new(HashSet::new()));
    let codes = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let outcomes = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let svc = svc.clone();
            let client_ids = client_ids.clone();
            let codes = codes.clone();
            async move {
                let streaming = i % 5 == 0;
                let mut req = Request::post("http://upstream.test/v1/chat/completions")
                    .header("content-type", "application/json");
                if streaming {
                    req = req.header("accept", "text/event-stream");
                }
                let req = req
                    .body(Full::new(Bytes::from(format!(
                        r#"{{"model":"m","n":{i}}}"#
                    ))))
                    .unwrap();
                let t0 = Instant::now();
                let res = svc
                    .oneshot(req)
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                let (parts, body) = res.into_parts();
                let body = body
                    .collect()
                    .await
                    .expect("bodies end cleanly, failures included")
                    .to_bytes();
                let elapsed = t0.elapsed();

                let deadline = if streaming {
                    Duration::from_secs(300)
                } else {
                    Duration::from_secs(60)
                };
                assert!(elapsed <= deadline, "request {i} took {elapsed:?}");
                let text = std::str::from_utf8(&body).unwrap();
                if parts.status == 200 {
                    let id = if streaming {
                        if let Some(event) = text
                            .strip_suffix("\n\n")
                            .and_then(|t| t.rsplit("\n\n").next())
                        {
                            if let Some(json) = event
                                .strip_prefix("data: ")
                                .filter(|j| j.starts_with("{\"error\""))
                            {
                                // A stalled stream: its last event is the envelope.
                                let err = common::envelope(json.as_bytes());
                                assert_eq!(err["code"], "timeout", "request {i}: {text}");
                                return "stalled";
                            }
                        }
                        assert!(text.ends_with("data: [DONE]\n\n"), "request {i}: {text}");
                        text.split('"').nth(3).unwrap().to_owned()
                    } else {
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        v["id"].as_str().unwrap().to_owned()
                    };
                    assert!(
                        client_ids.lock().unwrap().insert(id),
                        "request {i}: a success arrived twice"
                    );
                    "ok"
                } else {
                    assert_eq!(
                        parts.headers["content-type"], "application/json",
                        "request {i}"
                    );
                    assert!(parts.headers.contains_key("x-request-id"), "request {i}");
                    let err = common::envelope(&body);
                    *codes
                        .lock()
                        .unwrap()
                        .entry(err["code"].as_str().unwrap().to_owned())
                        .or_insert(0) += 1;
                    match err["code"].as_str().unwrap() {
                        "rate_limit_exceeded"
                        | "internal_error"
                        | "upstream_error"
                        | "connection_error"
                        | "service_unavailable"
                        | "timeout"
                        | "circuit_open" => {}
                        other => panic!("request {i}: unexpected code {other}: {text}"),
                    }
                    "failed"
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;

    let total = started.elapsed();
    let ok = outcomes.iter().filter(|o| **o == "ok").count();
    let stalled = outcomes.iter().filter(|o| **o == "stalled").count();
    eprintln!(
        "chaos: {REQUESTS} requests, {ok} ok, {stalled} stalled streams, {} failed, {} upstream attempts, {total:?} virtual",
        REQUESTS - ok - stalled,
        ledger.attempts.load(Ordering::SeqCst)
    );
    assert_eq!(outcomes.len(), REQUESTS);
    assert!(ok > REQUESTS / 2, "{ok} successes");
    assert!(stalled > 0, "the stall case was exercised");
    let codes = codes.lock().unwrap().clone();
    eprintln!("chaos: failures by code {codes:?}");
    assert!(
        codes.contains_key("timeout"),
        "hung attempts ran into the total timeout"
    );

    // Every upstream success reached the client, exactly once.
    let upstream_ids = ledger.successes.lock().unwrap().clone();
    assert_eq!(*client_ids.lock().unwrap(), upstream_ids);

    // Retries stayed within the budget: per 10 s window, 100 plus 20 % of
    // that window's requests.
    let attempts = ledger.attempts.load(Ordering::SeqCst);
    let windows = total.as_secs() / 10 + 1;
    let bound = REQUESTS as u64 + REQUESTS as u64 / 5 + 100 * windows;
    assert!(
        attempts <= bound,
        "{attempts} attempts for {REQUESTS} requests over {total:?} (bound {bound})"
    );
    assert!(attempts > REQUESTS as u64, "failures were retried");
}

/// In the standard stack the timeout's body clock sits outside the breaker:
/// a stream that stalls after its headers must still count against the
/// upstream when the idle clock ends it.
#[tokio::test(start_paused = true)]
async fn a_stream_ended_by_the_idle_clock_counts_against_the_breaker() {
    use tower_http_resilience::circuit_breaker::CircuitState;

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
    use tower_http_resilience::circuit_breaker::CircuitState;

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
/// then fall silent; and a streaming request for it.
fn stalling_stack(
    config: ResilienceConfig,
) -> (
    impl tower::Service<
            Request<Full<Bytes>>,
            Response = Response<impl http_body::Body<Data = Bytes, Error = BoxError>>,
            Error = tower_http_resilience::ApiError,
        > + Clone,
    tower_http_resilience::circuit_breaker::CircuitBreakerHandle,
) {
    let layer = config.build().unwrap();
    let handle = layer.breaker_handle();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|_req: Request<StackBody<Full<Bytes>>>| async {
            let events = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from(
                "data: {}\n\n",
            )))])
            .chain(futures_util::stream::pending());
            Ok::<_, BoxError>(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(BodyExt::boxed(StreamBody::new(events)))
                    .unwrap(),
            )
        }),
    );
    (svc, handle)
}

fn streaming_request() -> Request<Full<Bytes>> {
    Request::post("http://upstream.test/v1/chat/completions")
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}
