//! Resilience that never lowers availability: through the preset
//! (`ResilienceLayer::new()`), the attempts of one call count once against
//! its breaker, the preset's budget lets retries rescue a daily failure
//! mix, and `Attempts` counts every attempt sent. On a paused clock, against
//! a scripted upstream.

#![cfg(feature = "stack")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use support::{Plan, Upstream};
use tokio::time::{advance, sleep, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::circuit_breaker::{
    CircuitBreakerHandle, CircuitState, TransitionReason,
};
use tower_http_resilience::retry::Attempts;
use tower_http_resilience::stack::ResilienceLayer;
use tower_http_resilience::{ApiError, ErrorKind, ResilienceConfig, TimeoutPhase};

/// The body of the upstream's error answers.
const DOWN: &str = r#"{"error":{"message":"down","type":"x","code":"y"}}"#;

/// The breaker's key: the upstream's authority.
const KEY: &str = "upstream.test";

fn request() -> Request<Full<Bytes>> {
    Request::post(format!("http://{KEY}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(r#"{"model":"m"}"#)))
        .unwrap()
}

/// A call's outcome as its caller sees it: the body read whole, or the
/// error, with the attempts made.
async fn call<S, B>(svc: S) -> (Result<(), ApiError>, u32)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = ApiError>,
    B: http_body::Body,
{
    match svc.oneshot(request()).await {
        Ok(res) => {
            let attempts = Attempts::of(res.extensions()).get();
            let read = res.into_body().collect().await;
            let outcome = read
                .map(|_| ())
                .map_err(|_| ApiError::new(ErrorKind::Upstream));
            (outcome, attempts)
        }
        Err(err) => {
            let attempts = Attempts::of(err.extensions()).get();
            (Err(err), attempts)
        }
    }
}

/// Counts the breaker's openings.
fn count_openings(handle: &CircuitBreakerHandle) -> Arc<AtomicUsize> {
    let opened = Arc::new(AtomicUsize::new(0));
    let seen = opened.clone();
    handle.on_transition(move |t| {
        if t.to() == CircuitState::Open {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    opened
}

/// What a load run saw.
struct Run {
    calls: usize,
    succeeded: usize,
    /// Attempts of each failed call.
    failed_attempts: Vec<u32>,
    openings: usize,
    upstream_attempts: usize,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by_attempts: Vec<usize> = (1..=5)
            .map(|n| self.failed_attempts.iter().filter(|a| **a == n).count())
            .collect();
        f.debug_struct("Run")
            .field("calls", &self.calls)
            .field("succeeded", &self.succeeded)
            .field("failed_by_attempts_1_to_5", &by_attempts)
            .field("openings", &self.openings)
            .field("upstream_attempts", &self.upstream_attempts)
            .finish()
    }
}

/// `calls` calls through the preset at 200 calls a second (virtual time),
/// against an upstream failing each attempt with probability `p`.
async fn load(layer: ResilienceLayer, p: f64, calls: usize, seed: u64) -> Run {
    fastrand::seed(seed); // the backoff's jitter
    let handle = layer.breaker_handle();
    let openings = count_openings(&handle);
    let upstream = failing(p, seed);
    let svc = layer.layer(upstream.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..calls {
        tasks.spawn(call(svc.clone()));
        if i % 20 == 19 {
            sleep(Duration::from_millis(100)).await;
        }
    }
    let mut run = Run {
        calls,
        succeeded: 0,
        failed_attempts: Vec::new(),
        openings: 0,
        upstream_attempts: 0,
    };
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (Ok(()), _) => run.succeeded += 1,
            (Err(_), attempts) => run.failed_attempts.push(attempts),
        }
    }
    run.openings = openings.load(Ordering::SeqCst);
    run.upstream_attempts = upstream.calls();
    println!("p = {p}, seed {seed}: {run:?}");
    run
}

#[tokio::test(start_paused = true)]
async fn a_third_of_attempts_failing_never_opens_the_breaker_and_retries_rescue_the_calls() {
    for seed in [1, 2, 3] {
        let run = load(ResilienceLayer::new(), 0.37, 10_000, seed).await;
        assert_eq!(run.openings, 0, "{run:?}");
        // Every failed call made its four attempts: the budget refused no
        // retry. With 3 retries, a call fails when all four attempts do:
        // 0.37^4 = 1.9 % of calls, so 98.1 % succeed on average.
        assert!(run.failed_attempts.iter().all(|a| *a == 4), "{run:?}");
        let rate = run.succeeded as f64 / run.calls as f64;
        assert!(rate >= 0.975, "{rate} succeeded: {run:?}");
    }
    // With one more retry, 1 - 0.37^5 = 99.3 % succeed: the budget lets
    // that many retries through too.
    let layer = ResilienceConfig::default().max_retries(4).build().unwrap();
    let run = load(layer, 0.37, 10_000, 4).await;
    assert_eq!(run.openings, 0, "{run:?}");
    assert!(run.failed_attempts.iter().all(|a| *a == 5), "{run:?}");
    assert!(run.succeeded as f64 >= 0.99 * run.calls as f64, "{run:?}");
}

#[tokio::test(start_paused = true)]
async fn most_attempts_failing_still_never_opens_the_breaker() {
    for seed in [5, 6] {
        let run = load(ResilienceLayer::new(), 0.6, 10_000, seed).await;
        // Counted per attempt, 60 % failures would open it; counted per
        // call, about 1 in 6 calls fails.
        assert_eq!(run.openings, 0, "{run:?}");
        let rate = run.succeeded as f64 / run.calls as f64;
        assert!(rate >= 0.75, "{rate} succeeded: {run:?}");
        // The budget bounds the retries: one per call, plus 10 a second
        // (the run lasts about 50 s).
        assert!(run.upstream_attempts <= 2 * run.calls + 600, "{run:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_upstream_opens_the_breaker_after_min_calls_calls() {
    let layer = ResilienceLayer::new();
    let handle = layer.breaker_handle();
    let upstream = Upstream::always(Plan::json(503, DOWN));
    let svc = layer.layer(upstream.clone());
    let min_calls = 10;
    // Nine calls, at once: four attempts each, one failure each.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 1..min_calls {
        calls.spawn(call(svc.clone()));
    }
    while let Some(done) = calls.join_next().await {
        let (outcome, attempts) = done.unwrap();
        assert_eq!((outcome.unwrap_err().status().as_u16(), attempts), (503, 4));
    }
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!(snap.state(), CircuitState::Closed);
    assert_eq!((snap.calls(), snap.failures()), (9, 9));
    // The tenth call's failure opens it.
    let (outcome, attempts) = call(svc.clone()).await;
    assert_eq!((outcome.unwrap_err().status().as_u16(), attempts), (503, 4));
    assert_eq!(handle.state(KEY), Some(CircuitState::Open));
    assert_eq!(upstream.calls(), 4 * min_calls);
    // Then calls fail fast.
    let (outcome, attempts) = call(svc.clone()).await;
    assert_eq!(outcome.unwrap_err().code(), "circuit_open");
    assert_eq!(attempts, 1);
    assert_eq!(
        upstream.calls(),
        4 * min_calls,
        "rejected without an attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn three_calls_that_time_out_four_times_each_do_not_open_it() {
    let layer = ResilienceConfig::default()
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle = layer.breaker_handle();
    let upstream = Upstream::always(Plan::hang());
    let svc = layer.layer(upstream.clone());
    // One client's three calls, at once (the window would forget the
    // first of three calls in a row: each takes about 24 s).
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..3 {
        calls.spawn(call(svc.clone()));
    }
    while let Some(done) = calls.join_next().await {
        let (outcome, attempts) = done.unwrap();
        assert_eq!(
            outcome.unwrap_err().timeout_phase(),
            Some(TimeoutPhase::Attempt)
        );
        assert_eq!(attempts, 4);
    }
    assert_eq!(upstream.calls(), 12);
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!(snap.state(), CircuitState::Closed);
    assert_eq!(
        (snap.calls(), snap.failures()),
        (3, 3),
        "one failure per call"
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_is_judged_by_its_own_attempt() {
    let layer = ResilienceLayer::new();
    let handle = layer.breaker_handle();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = reasons.clone();
    handle.on_transition(move |t| seen.lock().unwrap().push((t.to(), t.reason())));

    // A failing probe opens the breaker again at once: the call's next
    // attempt is rejected, and not counted (it was not sent).
    let upstream = Upstream::always(Plan::status(200)).first([Plan::json(503, DOWN)]);
    let svc = layer.layer(upstream.clone());
    handle.force_open(KEY, Duration::from_secs(30));
    advance(Duration::from_secs(30)).await;
    let (outcome, attempts) = call(svc.clone()).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.code(), "circuit_open");
    assert!(
        !err.is_retryable(),
        "the stack tried again: x-should-retry: false"
    );
    assert_eq!((attempts, upstream.calls()), (1, 1));
    assert_eq!(
        reasons.lock().unwrap()[1..],
        [
            (CircuitState::HalfOpen, TransitionReason::OpenElapsed),
            (CircuitState::Open, TransitionReason::ProbeFailed)
        ]
    );
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!((snap.state(), snap.calls()), (CircuitState::Open, 0));

    // A successful probe closes it; the call is not counted again in the
    // fresh window.
    let open_for = snap.open_remaining().unwrap();
    advance(open_for).await;
    let (outcome, attempts) = call(svc.clone()).await;
    assert!(outcome.is_ok());
    assert_eq!(attempts, 1);
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!((snap.state(), snap.calls()), (CircuitState::Closed, 0));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_headers_counts_once_when_it_ends() {
    let layer = ResilienceLayer::new();
    let handle = layer.breaker_handle();
    let upstream = Upstream::always(Plan::status(200)).first([
        Plan::json(503, DOWN),
        Plan::sse(&["data: {}\n\n"]).then_reset(),
    ]);
    let svc = layer.layer(upstream.clone());

    let res = svc.oneshot(request()).await.unwrap();
    assert_eq!(Attempts::of(res.extensions()).get(), 2);
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!(snap.calls(), 0, "the call is not over before its body");
    assert!(res.into_body().collect().await.is_err());
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!((snap.calls(), snap.failures()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_caller_gone_during_a_backoff_leaves_the_earlier_failure_counted_once() {
    let layer = ResilienceLayer::new();
    let handle = layer.breaker_handle();
    let upstream = Upstream::always(Plan::json(503, DOWN));
    let svc = layer.layer(upstream.clone());

    let call = tokio::spawn(svc.oneshot(request()));
    // The first attempt fails; the retry waits (at least 375 ms).
    advance(Duration::from_millis(100)).await;
    assert_eq!(upstream.calls(), 1);
    assert_eq!(handle.snapshot(KEY).unwrap().calls(), 0, "pending");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!((snap.calls(), snap.failures()), (1, 1));
    advance(Duration::from_secs(10)).await;
    assert_eq!(upstream.calls(), 1, "no attempt after the caller left");
    assert_eq!(handle.snapshot(KEY).unwrap().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_reports_every_attempt_sent_and_counts_one_failure() {
    let layer = ResilienceConfig::default()
        .total_timeout(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = layer.breaker_handle();
    let upstream =
        Upstream::always(Plan::hang()).first([Plan::json(503, DOWN), Plan::json(503, DOWN)]);
    let svc = layer.layer(upstream.clone());

    let start = Instant::now();
    let (outcome, attempts) = call(svc).await;
    let err = outcome.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Total));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!((attempts, upstream.calls()), (3, 3));
    assert!(!err.is_retryable(), "the stack already retried it");
    let snap = handle.snapshot(KEY).unwrap();
    assert_eq!((snap.calls(), snap.failures()), (1, 1));
}

/// An upstream whose every attempt fails with 503 with probability `p`,
/// independently (a seeded generator: the runs are reproducible).
fn failing(p: f64, seed: u64) -> Upstream {
    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    Upstream::answering(move |_| {
        if rng.lock().unwrap().f64() < p {
            Plan::json(503, DOWN)
        } else {
            Plan::status(200)
        }
    })
}
