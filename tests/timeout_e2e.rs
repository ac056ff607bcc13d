//! End to end over loopback: the scripted upstream served on 127.0.0.1,
//! streaming SSE to a hyper-util client behind `TimeoutLayer`, on a paused
//! clock.
//!
//! The upstream runs on its own thread and runtime and sends exactly what
//! the test tells it to, when it tells it to. The test's runtime has a paused
//! clock that moves only by `tokio::time::advance` (a blocking task holds
//! off auto-advance while the test waits for real socket I/O), so every
//! timing below is exact virtual time and nothing sleeps for real.

#![cfg(all(feature = "timeout", feature = "normalize"))]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::Router;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Plan, Upstream};
use tokio::sync::mpsc;
use tokio::time::{advance, Instant};
use tower::{ServiceBuilder, ServiceExt};
use tower_http_resilience::timeout::RequestBody;
use tower_http_resilience::{ApiError, NormalizeLayer, TimeoutLayer, TimeoutPhase};

const MS: Duration = Duration::from_millis(1);

/// What the upstream streams to the `/sse` request: each text sent is one
/// event; the stream ends when this is dropped.
struct Events(mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>);

impl Events {
    fn send(&self, event: Bytes) -> Result<(), impl std::fmt::Debug> {
        self.0.try_send(Ok(Frame::data(event)))
    }
}

/// The scripted upstream on its own thread and runtime: `/sse` streams the
/// events the test sends (one request per test), `/json` answers a small
/// JSON body, anything else 200; every request is recorded.
fn spawn_upstream() -> (SocketAddr, Events, Upstream) {
    let (tx, rx) = mpsc::channel(16);
    let sse = Plan::sse(&[])
        .header("cache-control", "no-cache")
        .fed_by(rx);
    let up = Upstream::answering(move |req| match req.uri.path() {
        "/sse" => sse.clone(),
        "/json" => Plan::json(200, r#"{"ok":true}"#),
        _ => Plan::status(200),
    });
    let addr = support::spawn_server({
        let up = up.clone();
        move || up
    });
    (addr, Events(tx), up)
}

fn client<B>() -> Client<hyper_util::client::legacy::connect::HttpConnector, RequestBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

fn sse_request(addr: SocketAddr) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}/sse"))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .unwrap()
}

/// The next data frame as text, or `None` at the end.
async fn next_text<B>(body: &mut std::pin::Pin<&mut B>) -> Option<String>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    loop {
        let frame = body.frame().await?.expect("no body error");
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8(data.to_vec()).unwrap());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn healthy_long_stream_completes() {
    let _hold = support::hold_clock();
    let (addr, events, _up) = spawn_upstream();
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .layer(TimeoutLayer::new())
        .service(client::<Empty<Bytes>>());
    let start = Instant::now();
    let res = svc.oneshot(sse_request(addr)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = std::pin::pin!(res.into_body());

    // Five minutes less ten seconds of events, 50 s apart: far past the
    // ordinary 60 s total, never idle for 60 s, within the 300 s total.
    for i in 0..6 {
        if i > 0 {
            advance(Duration::from_secs(50)).await;
        }
        events
            .send(Bytes::from(format!("data: {{\"n\":{i}}}\n\n")))
            .unwrap();
        assert_eq!(
            next_text(&mut body).await.unwrap(),
            format!("data: {{\"n\":{i}}}\n\n")
        );
    }
    advance(Duration::from_secs(40)).await;
    events
        .send(Bytes::from_static(b"data: [DONE]\n\n"))
        .unwrap();
    assert_eq!(next_text(&mut body).await.unwrap(), "data: [DONE]\n\n");
    drop(events);
    assert_eq!(next_text(&mut body).await, None);
    assert_eq!(start.elapsed(), Duration::from_secs(290));
}

#[tokio::test(start_paused = true)]
async fn stalled_stream_ends_with_the_sse_error_event() {
    let _hold = support::hold_clock();
    let (addr, events, _up) = spawn_upstream();
    // A gateway's view: the server normalization layer around the client
    // stack, so the caller sees the failure as one last SSE event.
    let gateway = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .layer(TimeoutLayer::new().stream_idle_timeout(Duration::from_secs(20)))
        .service(client::<Empty<Bytes>>());
    let start = Instant::now();
    let res = gateway.oneshot(sse_request(addr)).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = std::pin::pin!(res.into_body());

    events
        .send(Bytes::from_static(b"data: {\"n\":0}\n\n"))
        .unwrap();
    assert_eq!(next_text(&mut body).await.unwrap(), "data: {\"n\":0}\n\n");
    advance(Duration::from_secs(15)).await;
    events
        .send(Bytes::from_static(b"data: {\"n\":1}\n\n"))
        .unwrap();
    assert_eq!(next_text(&mut body).await.unwrap(), "data: {\"n\":1}\n\n");

    // Then the upstream keeps the connection open and says nothing.
    advance(Duration::from_secs(20) - MS).await;
    assert!(
        body.frame().now_or_never().is_none(),
        "not idle long enough yet"
    );
    advance(MS).await;
    let last = next_text(&mut body).await.unwrap();
    assert_eq!(
        last,
        "data: {\"error\":{\"message\":\"stream idle for longer than 20s\",\"type\":\"timeout_error\",\"param\":null,\"code\":\"timeout\"}}\n\n"
    );
    assert_eq!(
        next_text(&mut body).await,
        None,
        "the stream ends after the error event"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(35));
    drop(events);
}

#[tokio::test(start_paused = true)]
async fn stalled_stream_without_normalization_fails_with_an_api_error() {
    let _hold = support::hold_clock();
    let (addr, events, _up) = spawn_upstream();
    let svc = TimeoutLayer::new()
        .stream_first_byte_timeout(Duration::from_secs(10))
        .layer_client(client::<Empty<Bytes>>());
    let start = Instant::now();
    let res = svc.oneshot(sse_request(addr)).await.unwrap();
    let mut body = std::pin::pin!(res.into_body());
    // Headers, then nothing at all.
    advance(Duration::from_secs(10)).await;
    let err = body.frame().await.unwrap().unwrap_err();
    let err = err.downcast::<ApiError>().unwrap();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::FirstByte));
    assert_eq!(err.status(), 504);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    drop(events);
}

#[tokio::test(start_paused = true)]
async fn content_length_survives_both_ways() {
    let _hold = support::hold_clock();
    let (addr, _events, up) = spawn_upstream();

    // Response: a content-length response keeps its exact size hint.
    let svc = TimeoutLayer::new().layer_client(client::<Empty<Bytes>>());
    let res = svc
        .oneshot(
            Request::get(format!("http://{addr}/json"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.headers()["content-length"], "11");
    assert_eq!(res.body().size_hint().exact(), Some(11));
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        r#"{"ok":true}"#
    );

    // Request: a peeked JSON body still goes out with a content-length.
    let svc = TimeoutLayer::new().layer_client(client::<Full<Bytes>>());
    let sent = r#"{"model":"m","stream":false,"messages":[]}"#;
    let res = svc
        .oneshot(
            Request::post(format!("http://{addr}/echo"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(sent.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let received = up.last();
    assert_eq!(received.uri.path(), "/echo");
    assert_eq!(received.body, sent);
    assert_eq!(
        received.header("content-length"),
        Some(sent.len().to_string().as_str())
    );
    assert!(!received.headers.contains_key("transfer-encoding"));
}

#[tokio::test(start_paused = true)]
async fn a_server_behind_the_layer_still_answers_with_content_length() {
    let _hold = support::hold_clock();
    // The layer inside a hyper server: its body wrapper must not turn a
    // sized body into a chunked one.
    let addr = support::spawn_server(|| {
        let svc = ServiceBuilder::new()
            .layer(NormalizeLayer::new())
            .layer(TimeoutLayer::new())
            .service_fn(|_req: Request<RequestBody<AxumBody>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
            });
        Router::new().fallback_service(svc)
    });
    let res = client::<Empty<Bytes>>()
        .request(
            Request::get(format!("http://{addr}/"))
                .body(RequestBody::new(Empty::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "5");
    assert!(!res.headers().contains_key("transfer-encoding"));
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
}

trait LayerClient {
    fn layer_client<S>(&self, inner: S) -> tower_http_resilience::timeout::Timeout<S>;
}

impl LayerClient for TimeoutLayer {
    fn layer_client<S>(&self, inner: S) -> tower_http_resilience::timeout::Timeout<S> {
        tower::Layer::layer(self, inner)
    }
}
