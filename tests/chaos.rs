//! Chaos: a few thousand requests, 32 at a time, through the standard server
//! stack (the gateway's) against an upstream that answers at random — 429s
//! with and without hints, 500, 502, 503, resets, calls that hang before
//! their headers and streams that stall — on tokio's paused clock.
//!
//! Every request must finish within its deadline (virtual time), every
//! failure must be the canonical envelope (or the last SSE event of a
//! stream), every upstream success must reach the client exactly once, and
//! the upstream must see no more attempts than the retry budget allows.

mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::{Plan, Received, Upstream};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http_resilience::ResilienceConfig;

const REQUESTS: usize = 3000;
const CONCURRENCY: usize = 32;

/// The upstream's plan for one call, at random: 429s with and without hints
/// (one above `max_retry_after`), 500, a 502 HTML page, 503, resets, calls
/// that hang before their headers, streams that stall after one event, and
/// successes. Every success carries a fresh id, noted in `successes`.
fn chaotic(
    rng: &Mutex<fastrand::Rng>,
    successes: &Mutex<HashSet<String>>,
    n: u64,
    req: &Received,
) -> Plan {
    let streaming = req.headers.contains_key("accept");
    let roll = rng.lock().unwrap().u32(0..100);
    let err = |status: u16, code: &str| {
        Plan::json(
            status,
            format!(r#"{{"error":{{"message":"chaos {code}","type":"x","code":"{code}"}}}}"#),
        )
    };
    match roll {
        0..=9 => {
            let ms = rng.lock().unwrap().u32(50..3000);
            Plan::status(429).header("retry-after-ms", ms.to_string())
        }
        10..=12 => Plan::status(429)
            .header("x-ratelimit-reset-requests", "1s")
            .body("Rate limit"),
        13..=14 => Plan::status(429).header("retry-after", "120"), // above max_retry_after
        15..=22 => err(500, "internal_error"),
        23..=29 => Plan::status(502)
            .header("content-type", "text/html")
            .body("<html>502</html>"),
        30..=36 => err(503, "service_unavailable"),
        37..=40 => Plan::reset(),
        41..=42 => Plan::hang(), // before its headers
        43..=44 if streaming => Plan::sse(&["data: {}\n\n"]).then_stall(),
        _ => {
            let id = format!("ok-{n}");
            successes.lock().unwrap().insert(id.clone());
            if streaming {
                let body = format!("data: {{\"id\":\"{id}\"}}\n\ndata: [DONE]\n\n");
                let chunks: Vec<&str> = body
                    .as_bytes()
                    .chunks(7)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                Plan::sse(&chunks)
            } else {
                Plan::json(200, format!(r#"{{"id":"{id}"}}"#))
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn thousands_of_requests_against_a_chaotic_upstream() {
    let layer = ResilienceConfig::default().build().unwrap().server();
    let rng = Mutex::new(fastrand::Rng::with_seed(0x5eed));
    let successes = Arc::new(Mutex::new(HashSet::new()));
    let calls = AtomicU64::new(0);
    let up = Upstream::answering({
        let successes = successes.clone();
        move |req| chaotic(&rng, &successes, calls.fetch_add(1, Ordering::SeqCst), req)
    });
    let svc = tower::Layer::layer(&layer, up.clone());

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
                // A client of its own (its own pacing key): the upstream's
                // random holds are about the call that got them, not the
                // next callers (a real upstream that says "come back in
                // two minutes" refuses everybody with that key, and the
                // stack's pacing then fails them all fast).
                let mut req = Request::post("http://upstream.test/v1/chat/completions")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer client-{i}"));
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
                                let err = support::envelope(json.as_bytes());
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
                    let err = support::envelope(&body);
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
        up.calls()
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
    let upstream_ids = successes.lock().unwrap().clone();
    assert_eq!(*client_ids.lock().unwrap(), upstream_ids);

    // Retries stayed within the budget: per 10 s window, 100 plus 20 % of
    // that window's requests.
    let attempts = up.calls() as u64;
    let windows = total.as_secs() / 10 + 1;
    let bound = REQUESTS as u64 + REQUESTS as u64 / 5 + 100 * windows;
    assert!(
        attempts <= bound,
        "{attempts} attempts for {REQUESTS} requests over {total:?} (bound {bound})"
    );
    assert!(attempts > REQUESTS as u64, "failures were retried");
}
