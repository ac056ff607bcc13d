//! Pacing: calls to a key the upstream said it will refuse are held back
//! until it takes calls again, or refused without being sent; a configured
//! rate per key; a bounded registry. All on tokio's paused clock.

#![cfg(feature = "pacing")]

mod counting_alloc;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::deadline::Deadline;
use tower_http_resilience::pacing::{
    HoldCause, Pacing, PacingAction, PacingConfig, PacingLayer, PacingRefusal, RefuseIfHeld,
};
use tower_http_resilience::{ApiError, ErrorKind};

const SEC: Duration = Duration::from_secs(1);

/// One call the upstream received: when, since the test's start.
#[derive(Clone, Debug)]
struct Sent {
    at: Duration,
}

type Answer =
    Box<dyn Fn(usize, &Request<Full<Bytes>>) -> (Duration, Response<Full<Bytes>>) + Send + Sync>;

/// A scripted upstream: notes every call, then answers after a delay with
/// what `answer` says for the n-th call.
#[derive(Clone)]
struct Upstream {
    start: Instant,
    sent: Arc<Mutex<Vec<Sent>>>,
    answer: Arc<Answer>,
}

impl Upstream {
    fn new(
        answer: impl Fn(usize, &Request<Full<Bytes>>) -> (Duration, Response<Full<Bytes>>)
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Upstream {
            start: Instant::now(),
            sent: Arc::default(),
            answer: Arc::new(Box::new(answer)),
        }
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

impl Service<Request<Full<Bytes>>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let n = {
            let mut sent = self.sent.lock().unwrap();
            sent.push(Sent {
                at: self.start.elapsed(),
            });
            sent.len() - 1
        };
        let (delay, res) = (self.answer)(n, &req);
        if delay.is_zero() {
            return Box::pin(std::future::ready(Ok(res)));
        }
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(res)
        })
    }
}

fn response(
    status: u16,
    headers: &[(&'static str, &str)],
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut res = Response::builder().status(status);
    for (k, v) in headers {
        res = res.header(*k, *v);
    }
    res.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn ok() -> Response<Full<Bytes>> {
    response(200, &[], "{}")
}

const RATE_LIMITED: &str =
    r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
const QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;

fn request(key: &str) -> Request<Full<Bytes>> {
    Request::post("https://api.example.com/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

type Paced = Pacing<Upstream>;

/// One call through `svc`, its body read to the end (so that a 429's body
/// is seen).
async fn call(svc: &Paced, req: Request<Full<Bytes>>) -> Result<StatusCode, ApiError> {
    let res = svc.clone().oneshot(req).await?;
    let status = res.status();
    res.into_body().collect().await.expect("body");
    Ok(status)
}

fn spawn_calls(
    svc: &Paced,
    key: &'static str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(Result<StatusCode, ApiError>, Duration)>> {
    let start = Instant::now();
    (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { (call(&svc, request(key)).await, start.elapsed()) })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_success_with_nothing_left_holds_the_next_calls_until_the_reset() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(
                200,
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "2s"),
                ],
                "{}",
            )
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::new();
    let svc = layer.layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);

    let calls = spawn_calls(&svc, "a", 4);
    for c in calls {
        let (result, _) = c.await.unwrap();
        assert_eq!(result.unwrap(), 200, "every held call succeeds");
    }
    let sent = upstream.sent();
    assert_eq!(sent.len(), 5);
    let mut later: Vec<Duration> = sent[1..].iter().map(|s| s.at).collect();
    assert!(
        later.iter().all(|&t| t >= 2 * SEC),
        "none before the reset: {later:?}"
    );
    // Released spread over the window after the reset, not all at once.
    later.sort();
    later.dedup();
    assert_eq!(later.len(), 4, "four distinct release instants");
    assert!(later
        .iter()
        .all(|&t| t < 2 * SEC + Duration::from_millis(250)));
    // Another credential is not held.
    let before = Instant::now();
    assert_eq!(call(&svc, request("b")).await.unwrap(), 200);
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_a_hint_holds_the_key_for_the_hint() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "2")], RATE_LIMITED)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let svc = PacingLayer::new().layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 429);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = spawn_calls(&svc, "a", 3);
    for c in calls {
        assert_eq!(c.await.unwrap().0.unwrap(), 200);
    }
    let sent = upstream.sent();
    assert_eq!(sent.len(), 4);
    assert!(sent[1..].iter().all(|s| s.at >= 2 * SEC), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn a_later_shorter_hint_never_shortens_a_hold() {
    // Two calls in flight together: the first is told 10 s, the second,
    // answered later, 1 s.
    let upstream = Upstream::new(|n, _| match n {
        0 => (
            Duration::from_millis(100),
            response(429, &[("retry-after", "10")], RATE_LIMITED),
        ),
        1 => (
            Duration::from_millis(200),
            response(429, &[("retry-after", "1")], RATE_LIMITED),
        ),
        _ => (Duration::ZERO, ok()),
    });
    let layer = PacingLayer::new();
    let handle = layer.handle();
    let svc = layer.layer(upstream.clone());
    let first = spawn_calls(&svc, "a", 2);
    for c in first {
        assert_eq!(c.await.unwrap().0.unwrap(), 429);
    }
    let holds = handle.holds();
    assert_eq!(holds.len(), 1);
    assert_eq!(upstream.sent()[1].at, Duration::ZERO, "both in flight");
    assert_eq!(holds[0].remaining(), Duration::from_millis(9_900));
    assert!(
        !holds[0].key().contains("Bearer"),
        "no credential in a key name"
    );

    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);
    assert!(upstream.sent()[2].at >= Duration::from_millis(10_100));
}

#[tokio::test(start_paused = true)]
async fn a_quota_429_holds_nothing() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "20")], QUOTA)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::new();
    let svc = layer.layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 429);
    assert!(layer.handle().holds().is_empty());
    let before = Instant::now();
    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_body_dropped_unread_still_holds() {
    let upstream = Upstream::new(|_, _| {
        (
            Duration::ZERO,
            response(429, &[("retry-after", "3")], RATE_LIMITED),
        )
    });
    let layer = PacingLayer::new();
    let svc = layer.layer(upstream);
    let res = svc.clone().oneshot(request("a")).await.unwrap();
    assert!(
        layer.handle().holds().is_empty(),
        "not before the body is seen"
    );
    drop(res);
    assert_eq!(layer.handle().holds()[0].remaining(), 3 * SEC);
}

/// Every result is a success or a refusal marked as not sent.
fn refused(result: &Result<StatusCode, ApiError>) -> Option<(Duration, HoldCause)> {
    let err = result.as_ref().err()?;
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.code(), "rate_limit_exceeded");
    let mark = err
        .extensions()
        .get::<PacingRefusal>()
        .expect("marked as not sent");
    assert_eq!(err.retry_after(), Some(mark.wait()));
    Some((mark.wait(), mark.cause()))
}

#[tokio::test(start_paused = true)]
async fn a_rate_of_3_per_minute_sends_at_most_3_in_any_minute_and_none_hangs() {
    let upstream = Upstream::new(|_, _| (Duration::ZERO, ok()));
    let svc = PacingLayer::with_config(PacingConfig::new().rpm(3)).layer(upstream.clone());
    let calls = spawn_calls(&svc, "a", 6);
    let mut succeeded = 0;
    let mut refusals = Vec::new();
    for c in calls {
        let (result, done_at) = c.await.unwrap();
        assert!(done_at <= 60 * SEC, "no call waits past max_retry_after");
        match refused(&result) {
            Some((wait, cause)) => {
                assert_eq!(cause, HoldCause::Rate);
                assert_eq!(done_at, Duration::ZERO, "refused at once");
                assert!(wait > 60 * SEC);
                refusals.push(wait);
            }
            None => succeeded += 1,
        }
    }
    let sent: Vec<Duration> = upstream.sent().iter().map(|s| s.at).collect();
    assert_eq!(sent.len(), succeeded);
    assert!(sent.iter().filter(|&&t| t < 10 * SEC).count() <= 3);
    for &t in &sent {
        assert!(
            sent.iter().filter(|&&u| u >= t && u < t + 60 * SEC).count() <= 3,
            "{sent:?}"
        );
    }
    assert_eq!(succeeded + refusals.len(), 6);
    assert!(!refusals.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_does_not_fit_is_refused_at_once_and_not_sent() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "10")], RATE_LIMITED)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::with_config(PacingConfig::new().max_retry_after(5 * SEC));
    let events = Arc::new(Mutex::new(Vec::new()));
    layer.handle().on_event({
        let events = events.clone();
        move |e| {
            events
                .lock()
                .unwrap()
                .push((e.action(), e.cause(), e.wait()))
        }
    });
    let svc = layer.layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 429);
    tokio::time::sleep(SEC).await;

    // Beyond max_retry_after.
    let start = Instant::now();
    let result = call(&svc, request("a")).await;
    assert_eq!(refused(&result), Some((9 * SEC, HoldCause::Upstream)));
    assert_eq!(start.elapsed(), Duration::ZERO);
    let rendered = result.unwrap_err().to_response::<Bytes>();
    assert_eq!(rendered.status(), 429);
    assert_eq!(rendered.headers()["retry-after"], "9");

    // Within max_retry_after, but past the call's deadline.
    tokio::time::sleep(5 * SEC).await;
    let mut req = request("a");
    Deadline::after(SEC).set_earliest(req.extensions_mut());
    assert_eq!(
        refused(&call(&svc, req).await),
        Some((4 * SEC, HoldCause::Upstream))
    );

    // Within both, but the request says not to wait.
    let mut req = request("a");
    req.extensions_mut().insert(RefuseIfHeld);
    assert_eq!(
        refused(&call(&svc, req).await),
        Some((4 * SEC, HoldCause::Upstream))
    );
    assert_eq!(start.elapsed(), 5 * SEC);
    assert_eq!(upstream.sent().len(), 1, "nothing sent");

    // A call that can wait does.
    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);
    assert!(start.elapsed() >= 9 * SEC);
    let events = events.lock().unwrap();
    let actions: Vec<PacingAction> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        actions,
        [
            PacingAction::Learnt,
            PacingAction::Refused,
            PacingAction::Refused,
            PacingAction::Refused,
            PacingAction::Waited
        ]
    );
    assert_eq!(events[0].2, 10 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_distinct_keys_stays_within_the_bound() {
    let upstream = Upstream::new(|_, _| (Duration::ZERO, ok()));
    let layer = PacingLayer::with_config(PacingConfig::new().max_keys(64));
    let handle = layer.handle();
    let mut svc = layer.layer(upstream);
    for i in 0..5_000 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(request(&format!("sk-{i}")))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(handle.len() <= 64);
    }
    assert!(handle.len() <= handle.capacity() && handle.capacity() <= 64);
}

#[tokio::test(start_paused = true)]
async fn a_held_key_survives_a_flood_of_new_keys() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "30")], RATE_LIMITED)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::with_config(PacingConfig::new().max_keys(64));
    let svc = layer.layer(upstream);
    assert_eq!(call(&svc, request("held")).await.unwrap(), 429);
    for i in 0..1_000 {
        call(&svc, request(&format!("sk-{i}"))).await.unwrap();
    }
    assert_eq!(
        layer.handle().holds().len(),
        1,
        "idle keys are forgotten first"
    );
}

/// An upstream that answers 200 at once and notes nothing.
#[derive(Clone, Copy)]
struct Quiet;

impl Service<Request<Full<Bytes>>> for Quiet {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        std::future::ready(Ok(ok()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_key_is_not_held_allocates_nothing_more() {
    fn per_call<S>(svc: &mut S, calls: u64) -> u64
    where
        S: Service<Request<Full<Bytes>>>,
        S::Error: std::fmt::Debug,
    {
        let reqs: Vec<_> = (0..calls).map(|_| request("a")).collect();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let before = counting_alloc::allocations();
        for req in reqs {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let mut f = std::pin::pin!(svc.call(req));
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => drop(r.unwrap()),
                std::task::Poll::Pending => panic!("answers at once"),
            }
        }
        counting_alloc::allocations() - before
    }
    let mut paced = PacingLayer::new().layer(Quiet);
    // The first call names the key.
    per_call(&mut paced, 1);
    let (bare, paced) = (per_call(&mut Quiet, 100), per_call(&mut paced, 100));
    assert_eq!(paced, bare, "pacing adds no allocation");
}

#[test]
fn headers_of_a_refusal_hold_no_credential() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let upstream = Upstream::new(|_, _| {
            (
                Duration::ZERO,
                response(429, &[("retry-after", "9")], RATE_LIMITED),
            )
        });
        let layer = PacingLayer::new();
        let svc = layer.layer(upstream);
        call(&svc, request("sk-very-secret-0123456789"))
            .await
            .unwrap();
        let mut req = request("sk-very-secret-0123456789");
        req.extensions_mut().insert(RefuseIfHeld);
        let err = call(&svc, req).await.unwrap_err();
        let res = err.to_response::<Bytes>();
        let text = format!("{:?}{:?}", res.headers(), res.body());
        assert!(!text.contains("very-secret"));
        let names: Vec<String> = layer
            .handle()
            .holds()
            .iter()
            .map(|h| h.key().to_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("very-secret")),
            "{names:?}"
        );
    });
}
