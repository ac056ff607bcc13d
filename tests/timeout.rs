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

#[tokio::test(start_paused = true)]
async fn ordinary_headers_just_in_time() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(60) - MS)
        .header("content-type", "application/json");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(
        plan.chunk(Duration::ZERO, "{}"),
    )));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "{}");
    assert_at(start, secs(60) - MS);
}

#[tokio::test(start_paused = true)]
async fn ordinary_headers_too_late() {
    let start = Instant::now();
    let plan = ok().after(secs(60) + MS);
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let err = call(svc, get()).await.unwrap_err();
    assert_timeout(&err, TimeoutPhase::Total);
    assert_eq!(err.message(), "request did not complete within 1m");
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn ordinary_body_must_end_within_the_total() {
    // Headers at 10 s, a part of the body, then the body stalls: tower's
    // Timeout would hang here forever.
    let start = Instant::now();
    let plan = ok()
        .after(secs(10))
        .header("content-type", "application/json")
        .chunk(secs(5), "{\"id\":")
        .then_stall();
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, get()).await.unwrap();
    assert_at(start, secs(10));
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "{\"id\":");
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn ordinary_body_just_in_time() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(10))
        .header("content-type", "application/json")
        .chunk(secs(30), "{\"id\":")
        .chunk(secs(20) - MS, "1}");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "{\"id\":1}");
    assert_at(start, secs(60) - MS);
}

// ---------------------------------------------------------------- streaming

#[tokio::test(start_paused = true)]
async fn streaming_headers_too_late() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(60) + MS)
        .header("content-type", "text/event-stream");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let err = call(svc, sse_get()).await.unwrap_err();
    assert_timeout(&err, TimeoutPhase::Attempt);
    assert_eq!(err.message(), "no response headers within 1m");
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn first_byte_just_in_time() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(1))
        .header("content-type", "text/event-stream")
        .chunk(secs(59) - MS, "data: 1\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "data: 1\n\n");
    assert_at(start, secs(60) - MS);
}

#[tokio::test(start_paused = true)]
async fn first_byte_too_late() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(1))
        .header("content-type", "text/event-stream")
        .chunk(secs(59) + MS, "data: 1\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "");
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::FirstByte);
    assert_eq!(err.message(), "no first byte of the stream within 1m");
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn idle_gap_just_under() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n")
        .chunk(secs(60) - MS, "data: 2\n\n")
        .chunk(secs(60) - MS, "data: 3\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "data: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert_at(start, secs(121) - 2 * MS);
}

#[tokio::test(start_paused = true)]
async fn idle_gap_just_over() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n")
        .chunk(secs(30), "data: 2\n\n")
        .chunk(secs(60) + MS, "data: 3\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "data: 1\n\ndata: 2\n\n");
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::Idle);
    assert_eq!(err.message(), "stream idle for longer than 1m");
    // Silent since the second event at 31 s.
    assert_at(start, secs(91));
}

#[tokio::test(start_paused = true)]
async fn stream_outlasts_the_ordinary_total_but_not_the_streaming_total() {
    // 250 s of events, 25 s apart: far past the ordinary 60 s, within 300 s.
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..10 {
        plan = plan.chunk(secs(25), "data: x\n\n");
    }
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.matches("data: x").count(), 10);
    assert_at(start, secs(250));
}

#[tokio::test(start_paused = true)]
async fn stream_past_the_streaming_total() {
    // Lively (an event every 24 s) but endless: cut at 300 s.
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..20 {
        plan = plan.chunk(secs(24), "data: x\n\n");
    }
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::Total);
    assert_eq!(err.message(), "request did not complete within 5m");
    assert_eq!(text.matches("data: x").count(), 12);
    assert_at(start, secs(300));
}

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

#[tokio::test(start_paused = true)]
async fn sse_comments_count_as_activity_by_default() {
    let start = Instant::now();
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(keep_alive_plan())));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert!(text.ends_with("data: 2\n\n"));
    assert_at(start, secs(126));
}

#[tokio::test(start_paused = true)]
async fn sse_comments_can_be_ignored() {
    let start = Instant::now();
    let svc = TimeoutLayer::new()
        .sse_comments_are_activity(false)
        .layer_on(upstream(&Upstream::always(keep_alive_plan())));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Idle);
    assert_eq!(text, "data: 1\n\n: keep-alive\n\n: keep-alive\n\n");
    // The last real event was at 1 s.
    assert_at(start, secs(61));
}

#[tokio::test(start_paused = true)]
async fn sse_comments_are_not_a_first_byte_when_ignored() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(30), ": processing\n\n")
        .chunk(secs(40), "data: 1\n\n");
    let svc = TimeoutLayer::new()
        .sse_comments_are_activity(false)
        .layer_on(upstream(&Upstream::always(plan)));
    let (_, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::FirstByte);
    assert_at(start, secs(60));
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

#[tokio::test(start_paused = true)]
async fn undetected_slow_body_is_ordinary() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let (text, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_eq!(text.len(), 5);
    assert_at(start, secs(10));
}

#[tokio::test(start_paused = true)]
async fn detected_by_accept_header() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let (text, err) = read(call(svc, sse_get()).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn detected_by_marker() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let mut req = get();
    req.extensions_mut().insert(Profile::Streaming);
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn ordinary_marker_wins_over_an_event_stream_response() {
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "data: x\n\n");
    }
    let svc = distinct().layer_on(upstream(&Upstream::always(plan)));
    let mut req = sse_get();
    req.extensions_mut().insert(Profile::Ordinary);
    let (_, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(10));
}

#[tokio::test(start_paused = true)]
async fn detected_by_response_content_type() {
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "data: x\n\n");
    }
    let svc = distinct().layer_on(upstream(&Upstream::always(plan)));
    let (text, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.matches("data: x").count(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn detected_by_grpc_response() {
    let start = Instant::now();
    let mut plan = ok().header("content-type", "application/grpc");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "m");
    }
    let svc = distinct().layer_on(upstream(&Upstream::always(plan.then_stall())));
    let (text, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    // Streaming: alive while it talks, cut by the idle clock, not the 10 s total.
    assert_timeout(&err.unwrap(), TimeoutPhase::Idle);
    assert_eq!(text.len(), 15);
    assert_at(start, secs(35));
}

const STREAM_BODY: &str =
    r#"{"model":"m","messages":[{"role":"user","content":"say \"stream\": true"}],"stream":true}"#;

#[tokio::test(start_paused = true)]
async fn detected_by_stream_true_in_the_json_body() {
    let start = Instant::now();
    let log = Upstream::always(slow_octets());
    let svc = distinct().layer_on(upstream(&log));
    let (text, err) = read(call(svc, json_post(STREAM_BODY)).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
    let seen = log.last();
    assert!(peeked(&seen));
    assert_eq!(seen.body, STREAM_BODY.as_bytes());
    assert_eq!(seen.size_hint.exact(), Some(STREAM_BODY.len() as u64));
}

#[tokio::test(start_paused = true)]
async fn stream_false_in_the_json_body_is_ordinary() {
    let start = Instant::now();
    let log = Upstream::always(slow_octets());
    let svc = distinct().layer_on(upstream(&log));
    let body = r#"{"model":"m","stream":false}"#;
    let (_, err) = read(call(svc, json_post(body)).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(10));
    assert_eq!(log.last().body, body.as_bytes());
}

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

#[tokio::test(start_paused = true)]
async fn a_large_peeked_body_arrives_identical_and_whole() {
    // 200 KiB in 1000 frames: the peek stops at 64 KiB, the inner service
    // still gets every byte, in order, and the trailers.
    let filler = "y".repeat(200 * 1024);
    let json = format!(r#"{{"stream":true,"pad":"{filler}"}}"#);
    let parts: Vec<Bytes> = json
        .as_bytes()
        .chunks(205)
        .map(Bytes::copy_from_slice)
        .collect();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let inner = tower::service_fn(move |req: Request<RequestBody<Chunked>>| {
        let seen = seen2.clone();
        async move {
            let deadline = Deadline::get(req.extensions()).unwrap();
            let collected = req.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            *seen.lock().unwrap() = Some((collected.to_bytes(), trailers, deadline));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let start = Instant::now();
    let svc = distinct().layer_on(inner);
    let res = svc.oneshot(chunked_json(parts)).await.unwrap();
    assert_eq!(read(res.into_body()).await.0, "ok");
    let (bytes, trailers, deadline) = seen.lock().unwrap().take().unwrap();
    assert_eq!(bytes.len(), json.len());
    assert!(bytes == json.as_bytes());
    assert_eq!(trailers.unwrap()["x-checksum"], "abc");
    // Streaming: the headers are due by the first-byte clock (5 s), not the
    // ordinary total (10 s).
    assert_eq!(deadline.instant(), start + secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_stream_key_past_the_peek_limit_is_not_seen() {
    let json = format!(r#"{{"pad":"{}","stream":true}}"#, "z".repeat(100));
    let log = Upstream::always(slow_octets());
    let start = Instant::now();
    let svc = distinct().body_peek_limit(64).layer_on(upstream(&log));
    let (_, err) = read(
        call(svc, json_post(json.clone()))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    // Not seen: ordinary.
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(10));
    let seen = log.last();
    assert!(peeked(&seen));
    assert_eq!(seen.body, json.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn only_json_bodies_are_peeked() {
    let log = Upstream::always(ok().chunk(Duration::ZERO, "ok"));
    // Not JSON.
    let svc = distinct().layer_on(upstream(&log));
    let req = Request::post("/")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(br#"{"stream":true}"#)))
        .unwrap();
    call(svc, req).await.unwrap();
    assert!(!peeked(&log.last()));
    // JSON without a body.
    let svc = distinct().layer_on(upstream(&log));
    call(svc, json_post(Bytes::new())).await.unwrap();
    assert!(!peeked(&log.last()));
    // Peeking turned off.
    let svc = distinct().body_peek_limit(0).layer_on(upstream(&log));
    call(svc, json_post(STREAM_BODY)).await.unwrap();
    assert!(!peeked(&log.last()));
    assert_eq!(log.last().body, STREAM_BODY.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_request_body_is_bounded_while_peeked() {
    // The caller sends the start of a JSON body and then nothing: the peek
    // waits on it, under the clock.
    let start = Instant::now();
    let frames = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
        b"{\"model\":",
    )))])
    .chain(stream::pending())
    .boxed();
    let req = Request::post("/")
        .header("content-type", "application/json")
        .body(StreamBody::new(frames))
        .unwrap();
    let called = Arc::new(Mutex::new(false));
    let called2 = called.clone();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Chunked>>| {
        *called2.lock().unwrap() = true;
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let err = distinct().layer_on(inner).oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_at(start, secs(10));
    assert!(!*called.lock().unwrap());
}

// ---------------------------------------------------------------- override

#[tokio::test(start_paused = true)]
async fn override_lengthens_the_ordinary_total() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().total_timeout(secs(31)));
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn override_sets_the_streaming_clocks() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n")
        .chunk(secs(3), "data: 2\n\n")
        .then_stall();
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().stream_idle_timeout(secs(2)));
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::Idle);
    assert_eq!(err.message(), "stream idle for longer than 2s");
    assert_eq!(text, "data: 1\n\n");
    assert_at(start, secs(3));

    // First byte and streaming total.
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(8), "data: 1\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().stream_first_byte_timeout(secs(7)));
    let start = Instant::now();
    let (_, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::FirstByte);
    assert_at(start, secs(7));

    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..10 {
        plan = plan.chunk(secs(1), "data: 1\n\n");
    }
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().stream_timeout(secs(4) + MS * 500));
    let start = Instant::now();
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_eq!(text.matches("data").count(), 4);
    assert_at(start, secs(4) + MS * 500);
}

// ---------------------------------------------------------------- deadline and gRPC

#[tokio::test(start_paused = true)]
async fn the_deadline_is_published() {
    let log = Upstream::always(ok().chunk(Duration::ZERO, "ok"));
    let start = Instant::now();
    call(distinct().layer_on(upstream(&log)), get())
        .await
        .unwrap();
    assert_eq!(
        Deadline::get(&log.last().extensions).unwrap().instant(),
        start + secs(10)
    );
    call(distinct().layer_on(upstream(&log)), sse_get())
        .await
        .unwrap();
    assert_eq!(
        Deadline::get(&log.last().extensions).unwrap().instant(),
        start + secs(5)
    );

    // An earlier deadline already on the request is kept.
    let mut req = get();
    Deadline::after(secs(3)).set_earliest(req.extensions_mut());
    call(distinct().layer_on(upstream(&log)), req)
        .await
        .unwrap();
    assert_eq!(
        Deadline::get(&log.last().extensions).unwrap().instant(),
        start + secs(3)
    );

    // Turned off.
    call(
        distinct().publish_deadline(false).layer_on(upstream(&log)),
        get(),
    )
    .await
    .unwrap();
    assert!(Deadline::get(&log.last().extensions).is_none());
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_set_when_asked() {
    let log = Upstream::always(ok().header("content-type", "application/grpc"));
    let grpc = || {
        Request::post("/grpc.health.v1.Health/Watch")
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    call(distinct().layer_on(upstream(&log)), grpc())
        .await
        .unwrap();
    assert_eq!(log.last().header("grpc-timeout"), None);

    let layer = distinct().set_grpc_timeout(true);
    call(layer.layer_on(upstream(&log)), grpc()).await.unwrap();
    // The streaming total: a gRPC response is a stream.
    assert_eq!(log.last().header("grpc-timeout"), Some("100000m"));

    let mut req = grpc();
    req.extensions_mut().insert(Profile::Ordinary);
    call(layer.layer_on(upstream(&log)), req).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), Some("10000000u"));

    // A shorter timeout the caller set is kept; a longer one is lowered.
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "2S".parse().unwrap());
    call(layer.layer_on(upstream(&log)), req).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), Some("2S"));
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "1H".parse().unwrap());
    call(layer.layer_on(upstream(&log)), req).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), Some("100000m"));

    // Not a gRPC request: untouched.
    call(layer.layer_on(upstream(&log)), get()).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), None);
}

// ---------------------------------------------------------------- forwarding

#[tokio::test(start_paused = true)]
async fn size_hint_and_end_of_stream_are_forwarded() {
    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    let body = res.into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    let mut body = std::pin::pin!(body);
    body.frame().await.unwrap().unwrap();
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));

    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    assert!(res.body().is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn inner_errors_become_api_errors() {
    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    });
    let err = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.code(), "connection_error");

    // A body error of the upstream passes through as is.
    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        let frames = stream::iter([Err::<Frame<Bytes>, _>(std::io::Error::other("reset"))]);
        Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    let mut body = std::pin::pin!(res.into_body());
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.downcast_ref::<std::io::Error>().is_some());
}

// ---------------------------------------------------------------- cancellation

/// Sets a flag when dropped.
struct DropFlag(Arc<Mutex<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = true;
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_body_or_the_future_cancels_cleanly() {
    let dropped = Arc::new(Mutex::new(false));
    let flag = dropped.clone();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let guard = DropFlag(flag.clone());
        async move {
            let s = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
                b"data: 1\n\n",
            )))])
            .chain(stream::pending())
            .map(move |f| {
                let _ = &guard;
                f
            });
            let res = Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(s))
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    let mut body = Box::pin(res.into_body());
    body.frame().await.unwrap().unwrap();
    // Waiting on the silent stream arms the idle timer.
    let waiting = tokio::time::timeout(secs(10), body.frame()).await;
    assert!(waiting.is_err());
    assert!(!*dropped.lock().unwrap());
    drop(body);
    assert!(
        *dropped.lock().unwrap(),
        "the upstream body is dropped with ours"
    );
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );

    // A future dropped while waiting for the headers drops the inner one.
    let dropped = Arc::new(Mutex::new(false));
    let flag = dropped.clone();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
        }
    });
    let fut = TimeoutLayer::new().layer_on(inner).oneshot(get());
    assert!(tokio::time::timeout(secs(5), fut).await.is_err());
    assert!(*dropped.lock().unwrap());
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

// ---------------------------------------------------------------- attempt timeout

#[tokio::test(start_paused = true)]
async fn headers_timeout_each_side() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(30) - MS)
        .chunk(secs(100), "late body is fine");
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let res = svc.oneshot(get().map(RequestBody::new)).await.unwrap();
    assert_at(start, secs(30) - MS);
    // The body is untouched: not bounded by this layer.
    let body = BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "late body is fine");

    let start = Instant::now();
    let plan = ok().after(secs(30) + MS);
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let Err(err) = svc.oneshot(get().map(RequestBody::new)).await else {
        panic!("the attempt must time out")
    };
    assert_timeout(&err, TimeoutPhase::Attempt);
    assert_eq!(err.message(), "no response headers within 30s");
    assert!(err.is_retryable());
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn headers_timeout_override() {
    let start = Instant::now();
    let plan = ok().after(secs(10));
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let mut req = get().map(RequestBody::new);
    req.extensions_mut()
        .insert(TimeoutOverride::new().attempt_timeout(secs(4)));
    let Err(err) = svc.oneshot(req).await else {
        panic!("the attempt must time out")
    };
    assert_timeout(&err, TimeoutPhase::Attempt);
    assert_at(start, secs(4));
}

#[tokio::test(start_paused = true)]
async fn the_recommended_order_total_outside_attempt_inside() {
    // The attempt's headers arrive within its 30 s; the outer total clock
    // then bounds the body, which the attempt timeout leaves alone.
    let start = Instant::now();
    let plan = ok()
        .after(secs(20))
        .header("content-type", "application/json")
        .chunk(secs(1), "{")
        .then_stall();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new().total_timeout(secs(45)))
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let res = svc.oneshot(get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "{");
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(45));
}

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
