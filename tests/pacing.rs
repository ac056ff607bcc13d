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

mod pacing {
    mod holds;
    mod limits;
}
