//! Request bodies: late, lying, too large, past the budget.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{advance, Instant};
use tower_http_resilience::collect::CollectBodyLayer;

use super::raw::{bounded, get, raw, read_response};
use super::upstream::spawn_upstream;
use crate::gateway_harness::{start, Running};
use crate::support;

/// Waits until the gateway holds room for a request body: it is reading
/// one.
async fn until_reading(gw: &Running) {
    bounded(async {
        while gw.bodies.buffered_bodies() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_ends_is_answered_408_in_time() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;

    let mut s = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\
          x-request-id: slow-1\r\n\r\n5\r\n{\"a\":\r\n",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    until_reading(&gw).await;
    let answer = tokio::spawn(async move { (read_response(&mut s).await, Instant::now()) });
    advance(Duration::from_secs(60)).await;
    let (res, at) = bounded(answer).await.unwrap();
    assert_eq!(at - t0, Duration::from_secs(60), "the call's total timeout");
    assert_eq!(res.status, Some(408));
    assert_eq!(res.header("x-request-id"), Some("slow-1"));
    let err = support::envelope(&res.body);
    assert_eq!(err["type"], "timeout_error");
    assert_eq!(up.calls(), 0);
    assert_eq!(gw.bodies.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_length_that_promises_more_than_is_sent_is_answered_408() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;

    let mut s = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 1000000\r\n\r\n0123456789")
        .await
        .unwrap();
    until_reading(&gw).await;
    let answer = tokio::spawn(async move { read_response(&mut s).await });
    advance(Duration::from_secs(60)).await;
    let res = bounded(answer).await.unwrap();
    assert_eq!(res.status, Some(408));
    assert!(res.header("x-request-id").is_some());
    support::envelope(&res.body);
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_answered_413_with_a_request_id() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;
    let res = raw(
        gw.addr,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 1073741824\r\n\
         x-request-id: big-1\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(res.status, Some(413));
    assert_eq!(res.header("x-request-id"), Some("big-1"));
    let err = support::envelope(&res.body);
    assert_eq!(err["code"], "request_too_large");
    assert_eq!(err["message"], "the request body is larger than 32MiB");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_past_the_body_budget_waits_then_gets_503_overloaded() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let mut opts = up.options();
    let s = Duration::from_secs;
    opts.config = opts
        .config
        .max_retries(0)
        .total_timeout(s(120))
        .attempt_timeout(s(120))
        .breaker_window(s(120));
    opts.bodies = CollectBodyLayer::new()
        .max_request_body(1 << 20)
        .max_buffered_bodies(1 << 20)
        .timeout(s(60));
    let gw = start(opts).await;

    // A whole-budget body, forwarded to an upstream that does not answer:
    // its bytes are held (for a retry) until the call ends.
    let mut hog = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    hog.write_all(
        b"POST /hang HTTP/1.1\r\nhost: gw\r\ncontent-length: 1048576\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    hog.write_all(&vec![b' '; 1 << 20]).await.unwrap();
    let hog = tokio::spawn(async move { read_response(&mut hog).await });
    up.wait_for_calls(1).await;
    assert_eq!(gw.bodies.buffered_bodies(), 1 << 20);

    let mut small = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    small
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        .await
        .unwrap();
    let small = tokio::spawn(async move { read_response(&mut small).await });
    // A call with no body needs no room: answered while the other waits.
    assert_eq!(raw(gw.addr, &get("/v1/models")).await.status, Some(200));

    advance(s(60)).await;
    let small = bounded(small).await.unwrap();
    assert_eq!(small.status, Some(503));
    assert_eq!(small.header("retry-after"), Some("1"));
    assert_eq!(support::envelope(&small.body)["code"], "overloaded");

    up.release();
    assert_eq!(bounded(hog).await.unwrap().status, Some(200));
    assert_eq!(
        gw.bodies.buffered_bodies(),
        0,
        "memory returned when the call ended"
    );
    assert_eq!(up.calls(), 2, "the waiting call was never sent");
}
