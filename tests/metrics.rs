//! Metrics: what each layer records, read back from a real Prometheus
//! recorder (installed for the test's thread), on tokio's paused clock.

#![cfg(all(feature = "metrics", feature = "full"))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::prometheus::{calls, recorder, series, value, PrometheusHandle};
use support::{Plan, Upstream};
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::circuit_breaker::{
    BreakerKey, ByExtension, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, KeyDisplay,
};
use tower_http_resilience::key::ByAuthority;
use tower_http_resilience::pacing::{PacingLayer, RefuseIfHeld};
use tower_http_resilience::retry::{Backoff, Jitter};
use tower_http_resilience::timeout::{AttemptTimeoutLayer, Profile};
use tower_http_resilience::{
    NormalizeClientLayer, NormalizeLayer, ResilienceConfig, RetryLayer, TimeoutLayer,
};

const SEC: Duration = Duration::from_secs(1);

fn request(model: &'static str) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://api.example.com/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    req.extensions_mut().insert(BreakerKey::new(model));
    req
}

fn breaker_layer(display: KeyDisplay) -> CircuitBreakerLayer<ByExtension> {
    CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new()
            .min_calls(2)
            .failure_ratio(0.5)
            .open_duration(10 * SEC, 60 * SEC, 0.0)
            .key_display(display),
    )
    .key(ByExtension)
}

#[tokio::test(start_paused = true)]
async fn the_breaker_gauge_is_one_while_open_and_zero_once_closed() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let state = |h: &PrometheusHandle| value(h, "resilience_breaker_state", &[("key", "gpt-4o")]);
    let to = |h: &PrometheusHandle, to: &str| {
        value(
            h,
            "resilience_breaker_transitions_total",
            &[("key", "gpt-4o"), ("to", to)],
        )
    };

    let layer = breaker_layer(KeyDisplay::Plain);
    let breakers = layer.handle();
    let upstream = Upstream::script([Plan::status(503), Plan::status(503), Plan::status(200)]);
    let mut client = layer.layer(upstream);
    for _ in 0..2 {
        let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut client).await;
        let res = res.unwrap().call(request("gpt-4o")).await;
        res.unwrap().into_body().collect().await.unwrap();
    }
    assert_eq!(breakers.state("gpt-4o"), Some(CircuitState::Open));
    assert_eq!(state(&handle), Some(1.0));
    assert_eq!(to(&handle, "open"), Some(1.0));

    // The open duration ends; the probe succeeds and closes the breaker.
    tokio::time::advance(10 * SEC).await;
    let res = client.oneshot(request("gpt-4o")).await;
    res.unwrap().into_body().collect().await.unwrap();
    assert_eq!(breakers.state("gpt-4o"), Some(CircuitState::Closed));
    assert_eq!(state(&handle), Some(0.0));
    assert_eq!(to(&handle, "half-open"), Some(1.0));
    assert_eq!(to(&handle, "closed"), Some(1.0));
    // One series for the key, whatever the state: nothing left at 1.
    assert_eq!(series(&handle, "resilience_breaker_state").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_key_leaves_no_gauge_at_one() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let state = |key: &str| value(&handle, "resilience_breaker_state", &[("key", key)]);
    let layer = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new()
            .max_keys(1)
            .idle_timeout(60 * SEC)
            .key_display(KeyDisplay::Plain),
    );
    let breakers = layer.handle();

    // Evicted by a new key when the registry is full.
    breakers.force_open("evicted", 3600 * SEC);
    assert_eq!(state("evicted"), Some(1.0));
    breakers.force_open("newcomer", 3600 * SEC);
    assert_eq!(breakers.state("evicted"), None);
    assert_eq!(state("evicted"), Some(0.0));
    assert_eq!(state("newcomer"), Some(1.0));

    // Reset by hand.
    assert!(breakers.reset("newcomer"));
    assert_eq!(state("newcomer"), Some(0.0));

    // Forgotten as idle once its open duration is over, while still
    // marked open (no call came to turn it half-open).
    breakers.force_open("idle", 10 * SEC);
    assert_eq!(state("idle"), Some(1.0));
    tokio::time::advance(61 * SEC).await;
    assert_eq!(breakers.evict_idle(), 1);
    assert_eq!(state("idle"), Some(0.0));

    // A key seen again starts a closed breaker: its gauge follows it.
    breakers.force_open("evicted", 5 * SEC);
    assert_eq!(state("evicted"), Some(1.0));
    breakers.reset_all();
    let at_one: Vec<_> = series(&handle, "resilience_breaker_state")
        .into_iter()
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(at_one.is_empty(), "{at_one:?}");
}

#[tokio::test(start_paused = true)]
async fn breaker_keys_are_hashed_unless_shown_plain() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let hashed = CircuitBreakerLayer::new().handle();
    hashed.force_open("sk-secret-0123456789", 5 * SEC);
    let text = handle.render();
    assert!(!text.contains("secret"), "{text}");
    let lines = series(&handle, "resilience_breaker_state");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("resilience_breaker_state{key=\"key#"),
        "{lines:?}"
    );

    // Redacted keys share one label: no gauge, only the transitions.
    let redacted = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new().key_display(KeyDisplay::Redacted),
    )
    .handle();
    redacted.force_open("a", 5 * SEC);
    redacted.force_open("b", 5 * SEC);
    assert_eq!(series(&handle, "resilience_breaker_state").len(), 1);
    let opened = [("key", "[redacted]"), ("to", "open")];
    assert_eq!(
        value(&handle, "resilience_breaker_transitions_total", &opened),
        Some(2.0)
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_counted_by_phase() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let phase = |p: &str| value(&handle, "resilience_timeouts_total", &[("phase", p)]);

    // An attempt whose headers never come.
    let attempt = AttemptTimeoutLayer::new(SEC).layer(Upstream::always(Plan::hang()));
    let err = attempt.oneshot(request("m")).await.unwrap_err();
    assert_eq!(err.code(), "timeout");

    let timeout = TimeoutLayer::new()
        .total_timeout(5 * SEC)
        .stream_first_byte_timeout(3 * SEC)
        .stream_idle_timeout(2 * SEC);
    let streaming = |mut req: Request<Full<Bytes>>| {
        req.extensions_mut().insert(Profile::Streaming);
        req
    };
    let upstream = Upstream::script([
        // Ordinary: no headers within the total.
        Plan::hang(),
        // Ordinary: the body stalls.
        Plan::status(200).body("{").streamed().then_stall(),
        // A stream that never sends its first byte.
        Plan::status(200)
            .header("content-type", "text/event-stream")
            .streamed()
            .then_stall(),
        // A stream that stalls after its first event.
        Plan::sse(&["data: 1\n\n"]).then_stall(),
    ]);
    let svc = timeout.layer(upstream);
    assert!(svc.clone().oneshot(request("m")).await.is_err());
    for req in [
        request("m"),
        streaming(request("m")),
        streaming(request("m")),
    ] {
        let res = svc.clone().oneshot(req).await.unwrap();
        assert!(res.into_body().collect().await.is_err());
    }
    assert_eq!(phase("attempt"), Some(1.0));
    assert_eq!(phase("total"), Some(2.0));
    assert_eq!(phase("first_byte"), Some(1.0));
    assert_eq!(phase("idle"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn calls_held_or_refused_by_pacing_are_counted_once_each() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream = Upstream::script([
        Plan::status(429).header("retry-after", "2"),
        Plan::status(200),
    ]);
    let svc = PacingLayer::new().key(ByAuthority).layer(upstream.clone());
    let res = svc.clone().oneshot(request("m")).await.unwrap();
    assert_eq!(res.status(), 429);
    res.into_body().collect().await.unwrap();
    assert_eq!(
        series(&handle, "resilience_held_total"),
        Vec::<String>::new()
    );

    // Two calls wait for the hold; one that may not wait is refused.
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(request("m"))))
        .collect();
    let mut refused = request("m");
    refused.extensions_mut().insert(RefuseIfHeld);
    assert_eq!(
        svc.clone().oneshot(refused).await.unwrap_err().code(),
        "rate_limit_exceeded"
    );
    for call in waiting {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    // A call after the hold is not counted.
    svc.oneshot(request("m")).await.unwrap();
    let held = [("key", "api.example.com")];
    assert_eq!(value(&handle, "resilience_held_total", &held), Some(3.0));
    assert_eq!(upstream.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_server_counts_each_call_once_when_its_body_ends() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let calls = |outcome: &str, code: &str| calls(&handle, outcome, code);
    let upstream = Upstream::script([
        // A stream of three events, one a second.
        Plan::sse(&[])
            .chunk(SEC, "data: 1\n\n")
            .chunk(SEC, "data: 2\n\n")
            .chunk(SEC, "data: 3\n\n"),
        Plan::json(
            503,
            r#"{"error":{"message":"down","type":"x","code":"weird_code"}}"#,
        ),
        Plan::sse(&["data: 1\n\n"]).then_reset(),
        Plan::sse(&["data: 1\n\n"]).then_stall(),
    ]);
    let svc = NormalizeLayer::new().layer(upstream);

    let res = svc.clone().oneshot(request("m")).await.unwrap();
    assert_eq!(calls("success", "none"), None, "not before the stream ends");
    res.into_body().collect().await.unwrap();
    assert_eq!(calls("success", "none"), Some(1.0));
    let duration = [("outcome", "success")];
    let count = value(&handle, "resilience_call_duration_seconds_count", &duration);
    assert_eq!(count, Some(1.0));

    let res = svc.clone().oneshot(request("m")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(calls("error", "service_unavailable"), Some(1.0));
    assert!(!handle.render().contains("weird_code"), "codes are bounded");

    // A stream cut by the upstream ends with an error event: an error.
    let res = svc.clone().oneshot(request("m")).await.unwrap();
    res.into_body().collect().await.unwrap();
    assert_eq!(calls("error", "connection_error"), Some(1.0));

    // A caller that goes away mid-stream.
    let res = svc.oneshot(request("m")).await.unwrap();
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(calls("cancelled", "client_closed"), Some(1.0));
    assert_eq!(calls("success", "none"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn a_client_counts_a_retried_call_once_and_a_failed_stream_as_an_error() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let calls = |outcome: &str, code: &str| calls(&handle, outcome, code);
    let layer = ResilienceConfig::default()
        .build()
        .unwrap()
        .map_retry(|r| r.backoff(Backoff::constant(SEC)).jitter(Jitter::none()));
    let upstream = Upstream::script([
        Plan::status(503),
        Plan::status(503),
        Plan::status(200).body("ok"),
        Plan::json(
            429,
            r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        ),
        Plan::sse(&["data: 1\n\n"]).then_reset(),
    ]);
    let client = layer.layer(upstream.clone());

    let res = client.clone().oneshot(request("m")).await.unwrap();
    res.into_body().collect().await.unwrap();
    assert_eq!(upstream.calls(), 3);
    assert_eq!(calls("success", "none"), Some(1.0));

    let err = client.clone().oneshot(request("m")).await.unwrap_err();
    assert_eq!(err.code(), "insufficient_quota");
    assert_eq!(calls("error", "insufficient_quota"), Some(1.0));

    let res = client.oneshot(request("m")).await.unwrap();
    assert!(res.into_body().collect().await.is_err());
    assert_eq!(calls("error", "connection_error"), Some(1.0));
    let count = |outcome: &str| {
        value(
            &handle,
            "resilience_call_duration_seconds_count",
            &[("outcome", outcome)],
        )
    };
    assert_eq!((count("success"), count("error")), (Some(1.0), Some(2.0)));
}

#[tokio::test(start_paused = true)]
async fn a_client_alone_records_its_calls() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream = Upstream::script([Plan::status(404), Plan::status(200).body("ok")]);
    let client = NormalizeClientLayer::new().layer(RetryLayer::new().layer(upstream));
    assert_eq!(
        client
            .clone()
            .oneshot(request("m"))
            .await
            .unwrap_err()
            .status(),
        404
    );
    let res = client.oneshot(request("m")).await.unwrap();
    drop(res);
    let calls = |outcome: &str, code: &str| calls(&handle, outcome, code);
    assert_eq!(calls("error", "not_found"), Some(1.0));
    assert_eq!(calls("cancelled", "client_closed"), Some(1.0));
}

/// Durations are read on a cheap clock of their own (not tokio's): a mock
/// of it moves only when the test says.
#[test]
fn the_call_duration_covers_the_whole_stream() {
    let (clock, mock) = quanta::Clock::mock();
    quanta::with_clock(&clock, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (recorder, handle) = recorder();
            let _local = metrics::set_default_local_recorder(&recorder);
            let (events, fed) = tokio::sync::mpsc::channel(4);
            let upstream = Upstream::always(
                Plan::status(200)
                    .header("content-type", "text/event-stream")
                    .fed_by(fed),
            );
            let res = NormalizeLayer::new().layer(upstream).oneshot(request("m"));
            let mut body = res.await.unwrap().into_body();
            let event = || Ok(http_body::Frame::data(Bytes::from_static(b"data: 1\n\n")));
            events.send(event()).await.unwrap();
            body.frame().await.unwrap().unwrap();
            mock.increment(3 * SEC);
            events.send(event()).await.unwrap();
            mock.increment(SEC / 2);
            drop(events);
            body.collect().await.unwrap();
            let duration = [("outcome", "success")];
            let sum = value(&handle, "resilience_call_duration_seconds_sum", &duration);
            assert_eq!(sum, Some(3.5));
        });
    });
}
