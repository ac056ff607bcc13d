//! The attempt loop's series, read back from a real Prometheus recorder:
//! attempts by target and result, retries by reason, moves between
//! targets — each counted exactly, on tokio's paused clock.

#![cfg(all(feature = "metrics", feature = "full"))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::prometheus::{recorder, series, value};
use support::{Plan, Upstream};
use tower::{Layer, ServiceExt};
use tower_http_resilience::fallback::{Target, Targets};
use tower_http_resilience::retry::{Backoff, Jitter};
use tower_http_resilience::{ResilienceConfig, ResilienceLayer};

fn request() -> Request<Full<Bytes>> {
    Request::post("http://api.example.com/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
        .unwrap()
}

/// The preset with a constant 1 s backoff and no jitter.
fn preset() -> ResilienceLayer {
    ResilienceConfig::default().build().unwrap().map_retry(|r| {
        r.backoff(Backoff::constant(Duration::from_secs(1)))
            .jitter(Jitter::none())
    })
}

fn attempts(handle: &support::prometheus::PrometheusHandle, target: &str, result: &str) -> f64 {
    value(
        handle,
        "resilience_attempts_total",
        &[("target", target), ("result", result)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn retries_on_one_target_are_counted_by_attempt_and_reason() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream = Upstream::script([
        Plan::status(503),
        Plan::status(500),
        Plan::status(200).body("ok"),
        Plan::status(400),
    ]);
    let client = preset().layer(upstream.clone());

    let res = client.clone().oneshot(request()).await.unwrap();
    res.into_body().collect().await.unwrap();
    let err = client.oneshot(request()).await.unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(upstream.calls(), 4);

    assert_eq!(attempts(&handle, "default", "failure"), 3.0);
    assert_eq!(attempts(&handle, "default", "success"), 1.0);
    let retries = |reason: &str| {
        value(&handle, "resilience_retries_total", &[("reason", reason)]).unwrap_or(0.0)
    };
    assert_eq!(retries("service_unavailable"), 1.0);
    assert_eq!(retries("internal_error") + retries("upstream_error"), 1.0);
    assert_eq!(series(&handle, "resilience_retries_total").len(), 2);
    assert!(series(&handle, "resilience_fallbacks_total").is_empty());
}

#[tokio::test(start_paused = true)]
async fn moves_between_targets_are_counted_from_and_to() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let to_b = Arc::new(AtomicUsize::new(0));
    let seen = to_b.clone();
    // `a` is down; `b` answers.
    let upstream = Upstream::answering(move |req| match req.uri.host() {
        Some("a.test") => Plan::status(503),
        _ => {
            seen.fetch_add(1, Ordering::Relaxed);
            Plan::status(200).body("ok")
        }
    });
    let targets: Targets = [
        Target::new("a:m")
            .base_uri("http://a.test".parse().unwrap())
            .key("a:m")
            .retries(1),
        Target::new("b:m")
            .base_uri("http://b.test".parse().unwrap())
            .key("b:m"),
    ]
    .into();
    let client = preset().targets(targets).layer(upstream.clone());

    for _ in 0..2 {
        let res = client.clone().oneshot(request()).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(to_b.load(Ordering::Relaxed), 2);
    // Two calls: each tried `a` twice (one retry), then moved to `b`.
    assert_eq!(attempts(&handle, "a:m", "failure"), 4.0);
    assert_eq!(attempts(&handle, "b:m", "success"), 2.0);
    assert_eq!(attempts(&handle, "default", "failure"), 0.0);
    let moved = value(
        &handle,
        "resilience_fallbacks_total",
        &[("from", "a:m"), ("to", "b:m")],
    );
    assert_eq!(moved, Some(2.0));
    assert_eq!(
        value(
            &handle,
            "resilience_retries_total",
            &[("reason", "service_unavailable")]
        ),
        Some(2.0)
    );
}
