//! Fallback: every row of the table that says when a call is retried on a
//! target, moved to the next one at once, or handed back; streams that fail
//! before their first event; the most telling failure; the deadline over
//! the chain; what each target receives. Through the preset
//! (`ResilienceLayer::targets`), on a paused clock, against two scripted
//! upstreams told apart by the URI's host.

#![cfg(all(feature = "stack", feature = "fallback"))]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use support::{Plan, UpBody, Upstream};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::check::PromptTokens;
use tower_http_resilience::circuit_breaker::CircuitBreakerHandle;
use tower_http_resilience::fallback::{FallbackLayer, Served, Target, Targets};
use tower_http_resilience::retry::{Attempts, Backoff, Jitter, RetryBudget, RetryLayer};
use tower_http_resilience::{ApiError, BoxError, ErrorKind, ResilienceConfig, ResilienceLayer};

const BODY: &str = "{ \"model\" : \"gpt-4o\",\n  \"messages\": [{\"role\":\"user\",\"content\":\"say \\\"model\\\"\"}],\"stream\":false}";
const DOWN: &str = r#"{"error":{"message":"down","type":"server_error"}}"#;

/// Two upstreams behind one service: `a.test` and `b.test`.
#[derive(Clone)]
struct Two {
    a: Upstream,
    b: Upstream,
}

impl<B> Service<Request<B>> for Two
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<UpBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match req.uri().host() {
            Some("a.test") => self.a.call(req),
            Some("b.test") => self.b.call(req),
            other => panic!("no upstream at {other:?}"),
        }
    }
}

/// The first target: upstream `a`, the caller's model and credentials.
fn a() -> Target {
    Target::new("a:gpt-4o")
        .base_uri("http://a.test".parse().unwrap())
        .key("a:gpt-4o")
}

/// The second: upstream `b` under `/v1`, its own key and model name.
fn b() -> Target {
    Target::new("b:openai/gpt-4o")
        .base_uri("http://b.test/v1".parse().unwrap())
        .bearer("sk-b-target")
        .unwrap()
        .model("openai/gpt-4o")
        .key("b:openai/gpt-4o")
}

/// The preset with both targets: 2 retries on each, a constant 100 ms
/// backoff, no jitter.
fn preset(config: ResilienceConfig) -> ResilienceLayer {
    config
        .max_retries(2)
        .build()
        .unwrap()
        .map_retry(|r| {
            r.backoff(Backoff::constant(Duration::from_millis(100)))
                .jitter(Jitter::none())
        })
        .targets(Targets::from([a(), b()]))
}

fn post() -> Request<Full<Bytes>> {
    Request::post("http://gateway.test/v1/chat/completions?trace=1")
        .header("content-type", "application/json")
        .header("content-length", BODY.len().to_string())
        .header("authorization", "Bearer sk-caller-0000")
        .header("x-api-key", "sk-caller-0000")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap()
}

fn streaming() -> Request<Full<Bytes>> {
    let mut req = post();
    req.headers_mut()
        .insert("accept", "text/event-stream".parse().unwrap());
    req
}

fn served<B>(res: &Response<B>) -> (String, u32) {
    let target = Served::of(res.extensions()).expect("a target served");
    let attempts = Attempts::of(res.extensions()).get();
    (target.target().to_owned(), attempts)
}

fn failed(err: &ApiError) -> (String, u32) {
    let target = Served::of(err.extensions()).expect("a target failed");
    (
        target.target().to_owned(),
        Attempts::of(err.extensions()).get(),
    )
}

async fn text<B>(res: Response<B>) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

mod fallback {
    mod caller;
    mod moves;
    mod rewrites;
    mod streams;
}
