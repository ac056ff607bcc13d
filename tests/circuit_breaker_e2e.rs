//! The circuit breaker in front of the scripted upstream served over HTTP on
//! 127.0.0.1, called through a hyper-util legacy client.
//!
//! The upstream runs on its own thread and runtime (real clock); the test's
//! runtime has a paused clock, moved with `tokio::time::advance`, so the
//! open time passes without sleeping.

#![cfg(feature = "circuit-breaker")]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Plan, Upstream};
use tokio::sync::mpsc;
use tokio::time::advance;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http_resilience::circuit_breaker::{
    ByAuthority, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};
use tower_http_resilience::ErrorKind;

/// Serves the scripted upstream on 127.0.0.1 from its own thread and runtime.
fn start_upstream(up: &Upstream) -> SocketAddr {
    let up = up.clone();
    support::spawn_server(move || up)
}

fn post_to(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"model":"m"}"#)))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn opens_on_a_failing_upstream_and_closes_when_it_recovers() {
    // Overloaded until it recovers.
    let healthy = Arc::new(AtomicBool::new(false));
    let up = Upstream::answering({
        let healthy = healthy.clone();
        move |_| {
            if healthy.load(Ordering::SeqCst) {
                Plan::status(200).body(r#"{"choices":[]}"#)
            } else {
                Plan::status(503).body(
                    r#"{"error":{"message":"overloaded","type":"service_unavailable","code":"overloaded"}}"#,
                )
            }
        }
    });
    let addr = start_upstream(&up);
    let layer = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new()
            .min_calls(4)
            .failure_ratio(0.5)
            .open_duration(Duration::from_secs(30), Duration::from_secs(300), 0.0),
    )
    .key(ByAuthority);
    let handle = layer.handle();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut svc = ServiceBuilder::new().layer(layer).service(client);
    let key = addr.to_string();

    // The upstream fails: its 503s pass through until the breaker opens.
    for _ in 0..4 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(post_to(addr, "/v1/chat/completions"))
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"{\"error\""));
    }
    assert_eq!(handle.state(&key), Some(CircuitState::Open));
    assert_eq!(up.calls(), 4);

    // Open: the upstream stops receiving calls; the client gets 503 and
    // retry-after.
    for _ in 0..5 {
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(post_to(addr, "/v1/chat/completions"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        let res = err.to_response::<Bytes>();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "30");
        assert_eq!(
            res.body().as_ref(),
            br#"{"error":{"message":"circuit breaker is open","type":"service_unavailable","param":null,"code":"circuit_open"}}"#
        );
    }
    advance(Duration::from_secs(20)).await;
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(post_to(addr, "/v1/chat/completions"))
        .await
        .unwrap_err();
    assert_eq!(err.to_response::<Bytes>().headers()["retry-after"], "10");
    assert_eq!(up.calls(), 4);

    // The upstream recovers; after the open time a probe goes through and
    // closes the breaker.
    healthy.store(true, Ordering::SeqCst);
    advance(Duration::from_secs(10)).await;
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(post_to(addr, "/v1/chat/completions"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        r#"{"choices":[]}"#
    );
    assert_eq!(handle.state(&key), Some(CircuitState::Closed));
    assert_eq!(up.calls(), 5);
    for _ in 0..3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(post_to(addr, "/v1/chat/completions"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let _ = res.into_body().collect().await.unwrap();
    }
    assert_eq!(up.calls(), 8);
    let snap = handle.snapshot(&key).unwrap();
    assert_eq!((snap.calls(), snap.failures()), (3, 0));
}

#[tokio::test(start_paused = true)]
async fn a_real_stream_that_breaks_after_its_headers_opens_it() {
    let up = Upstream::new();
    let addr = start_upstream(&up);
    let layer = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new()
            .min_calls(2)
            .failure_ratio(1.0)
            .open_duration(Duration::from_secs(30), Duration::from_secs(300), 0.0),
    )
    .key(ByAuthority);
    let handle = layer.handle();
    // A broken stream kills its connection: no pooling, so that the next
    // request does not pick up a dead one.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let mut svc = ServiceBuilder::new().layer(layer).service(client);
    let key = addr.to_string();

    for i in 0..2 {
        // One event; then, when the test says so, the upstream fails mid-stream.
        let (events, rx) = mpsc::channel(2);
        up.push(Plan::sse(&[]).fed_by(rx));
        events
            .send(Ok(Frame::data(Bytes::from_static(
                b"data: {\"delta\":\"hi\"}\n\n",
            ))))
            .await
            .unwrap();
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(post_to(addr, "/v1/stream"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        // The headers looked fine: nothing is recorded yet.
        assert_eq!(handle.snapshot(&key).unwrap().calls(), i);
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "data: {\"delta\":\"hi\"}\n\n");
        assert_eq!(handle.snapshot(&key).unwrap().calls(), i);
        events
            .send(Err(std::io::Error::other("upstream crashed")))
            .await
            .unwrap();
        let end = body.collect().await;
        assert!(end.is_err(), "the stream must fail");
    }
    assert_eq!(handle.state(&key), Some(CircuitState::Open));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(post_to(addr, "/v1/stream"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "circuit_open");
    assert_eq!(up.calls(), 2);
}
