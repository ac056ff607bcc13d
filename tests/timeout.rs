//! `TimeoutLayer` and `AttemptTimeoutLayer` against scripted upstreams, on a
//! paused clock: every clock on each side of its limit, profile detection,
//! the override, the published deadline, forwarding and cancellation.

#![cfg(feature = "timeout")]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use support::{Plan, Received, UpBody, Upstream};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http_resilience::deadline::Deadline;
use tower_http_resilience::timeout::{
    AttemptTimeoutLayer, Profile, RequestBody, TimeoutBody, TimeoutOverride,
};
use tower_http_resilience::{ApiError, BoxError, ErrorKind, TimeoutLayer, TimeoutPhase};

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A caller's request body in many frames.
type Chunked = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// Whether the timeout layer had peeked at the request body, as the
/// upstream saw it.
#[derive(Clone, Copy, Debug)]
struct Peeked(bool);

fn peeked(received: &Received) -> bool {
    received
        .extensions
        .get::<Peeked>()
        .expect("noted on the way in")
        .0
}

/// The scripted upstream behind a step that notes whether the request body
/// was peeked at.
fn upstream(
    up: &Upstream,
) -> impl Service<Request<RequestBody<Full<Bytes>>>, Response = Response<UpBody>, Error = BoxError> + Clone
{
    ServiceBuilder::new()
        .map_request(|mut req: Request<RequestBody<Full<Bytes>>>| {
            let peeked = Peeked(req.body().was_peeked());
            req.extensions_mut().insert(peeked);
            req
        })
        .service(up.clone())
}

/// A 200 whose body is a stream of the chunks added to it.
fn ok() -> Plan {
    Plan::status(200).streamed()
}

fn get() -> Request<Full<Bytes>> {
    Request::new(Full::new(Bytes::new()))
}

fn sse_get() -> Request<Full<Bytes>> {
    Request::builder()
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn json_post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// Reads a body to its end or its first error.
async fn read<B>(body: TimeoutBody<B>) -> (String, Option<ApiError>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
            Err(e) => {
                let err = e
                    .downcast::<ApiError>()
                    .expect("a body error is an ApiError");
                assert!(body.is_end_stream(), "the body ends after its error");
                assert!(body.frame().await.is_none());
                return (text, Some(*err));
            }
        }
    }
    (text, None)
}

/// `elapsed` is `expected`, give or take the timer wheel's millisecond.
#[track_caller]
fn assert_at(start: Instant, expected: Duration) {
    let elapsed = start.elapsed();
    assert!(
        elapsed >= expected && elapsed <= expected + MS,
        "elapsed {elapsed:?}, expected {expected:?}"
    );
}

#[track_caller]
fn assert_timeout(err: &ApiError, phase: TimeoutPhase) {
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.status(), 504);
    assert_eq!(err.code(), "timeout");
    assert_eq!(err.timeout_phase(), Some(phase), "{err:?}");
}

async fn call<S>(svc: S, req: Request<Full<Bytes>>) -> Result<S::Response, ApiError>
where
    S: Service<Request<Full<Bytes>>, Error = ApiError>,
{
    svc.oneshot(req).await
}

// ---------------------------------------------------------------- ordinary

// ---------------------------------------------------------------- streaming

// ---------------------------------------------------------------- SSE comments

fn keep_alive_plan() -> Plan {
    // One event, then only keep-alive comments every 25 s for 100 s.
    let mut plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n");
    for _ in 0..4 {
        plan = plan.chunk(secs(25), ": keep-alive\n\n");
    }
    plan.chunk(secs(25), "data: 2\n\n")
}

// ---------------------------------------------------------------- detection

/// A layer whose profiles are easy to tell apart: ordinary 10 s total;
/// streaming idle 5 s, total 100 s.
fn distinct() -> TimeoutLayer {
    TimeoutLayer::new()
        .total_timeout(secs(10))
        .stream_first_byte_timeout(secs(5))
        .stream_idle_timeout(secs(5))
        .stream_timeout(secs(100))
}

/// 30 s of chunks, 2 s apart, in a response that does not say it streams.
fn slow_octets() -> Plan {
    let mut plan = ok().header("content-type", "application/octet-stream");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "x");
    }
    plan
}

const STREAM_BODY: &str =
    r#"{"model":"m","messages":[{"role":"user","content":"say \"stream\": true"}],"stream":true}"#;

/// A request body in many frames, with trailers, for the identity check.
fn chunked_json(parts: Vec<Bytes>) -> Request<Chunked> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames = parts
        .into_iter()
        .map(|p| Ok(Frame::data(p)))
        .chain(std::iter::once(Ok(Frame::trailers(trailers))));
    Request::post("/")
        .header("content-type", "application/json; charset=utf-8")
        .body(StreamBody::new(stream::iter(frames).boxed()))
        .unwrap()
}

// ---------------------------------------------------------------- override

// ---------------------------------------------------------------- deadline and gRPC

// ---------------------------------------------------------------- forwarding

// ---------------------------------------------------------------- cancellation

/// Sets a flag when dropped.
struct DropFlag(Arc<Mutex<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = true;
    }
}

// ---------------------------------------------------------------- attempt timeout

/// Builds a service from a layer without `ServiceBuilder` noise.
trait LayerOn {
    fn layer_on<S>(&self, inner: S) -> tower_http_resilience::timeout::Timeout<S>;
}

impl LayerOn for TimeoutLayer {
    fn layer_on<S>(&self, inner: S) -> tower_http_resilience::timeout::Timeout<S> {
        tower::Layer::layer(self, inner)
    }
}

#[allow(dead_code)]
fn _assert_send<T: Send>(_: T) {}

#[allow(dead_code)]
fn _futures_are_send(req: Request<Full<Bytes>>) {
    let svc = TimeoutLayer::new().layer_on(Upstream::new());
    _assert_send(svc.oneshot(req));
}

mod timeout {
    mod clocks;
    mod detect;
    mod settings;
}
