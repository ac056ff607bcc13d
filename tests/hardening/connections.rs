//! Connections: slow headers, the cap, idle keep-alive.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{advance, Instant};

use super::raw::{bounded, get, raw, read_response};
use super::upstream::spawn_upstream;
use crate::gateway_harness::start;
use crate::support;

/// A normal call through the gateway, by a hyper client.
async fn normal_call(gw: SocketAddr) -> StatusCode {
    let req = http::Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let (parts, _) = bounded(support::send(req)).await;
    parts.status
}

#[tokio::test(start_paused = true)]
async fn trickling_sockets_do_not_stop_normal_calls_and_are_closed_after_the_header_timeout() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;

    let mut slow = bounded(async {
        let mut slow = Vec::new();
        for _ in 0..300 {
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
                .await
                .unwrap();
            slow.push(s);
        }
        slow
    })
    .await;
    // One header line per second each, and a normal call in between.
    for second in 0..5 {
        for s in &mut slow {
            s.write_all(format!("x-slow-{second}: a\r\n").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(
            normal_call(gw.addr).await,
            StatusCode::OK,
            "second {second}"
        );
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(up.calls(), 5);

    // At the header read timeout (10 s after each accept) every one is closed.
    advance(Duration::from_secs(6)).await;
    let ends = bounded(futures_util::future::join_all(
        slow.iter_mut().map(read_response),
    ))
    .await;
    for end in ends {
        assert!(end.status.is_none(), "closed without an answer: {end:?}");
    }
    assert_eq!(up.calls(), 5, "no trickled request reached the upstream");
}

#[tokio::test(start_paused = true)]
async fn connections_over_the_cap_wait_to_be_accepted() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let mut opts = up.options();
    opts.limits.max_connections = 2;
    let gw = start(opts).await;

    let held: Vec<TcpStream> = vec![
        bounded(TcpStream::connect(gw.addr)).await.unwrap(),
        bounded(TcpStream::connect(gw.addr)).await.unwrap(),
    ];
    let third = tokio::spawn(async move {
        let res = raw(gw.addr, &get("/v1/models")).await;
        (res, Instant::now())
    });
    // A round trip to the upstream of our own: the gateway had as long to
    // serve the third call, and did not.
    up.ping().await;
    assert_eq!(up.calls(), 0);

    let t0 = Instant::now();
    advance(Duration::from_secs(10)).await;
    let (res, at) = bounded(third).await.unwrap();
    assert_eq!(res.status, Some(200));
    assert!(
        at >= t0 + Duration::from_secs(10),
        "served once a slot was free"
    );
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_but_not_one_with_a_stream_in_flight() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let mut opts = up.options();
    opts.limits.idle_timeout = Duration::from_secs(5);
    opts.limits.header_read_timeout = Duration::from_secs(30);
    opts.config = opts.config.stream_idle_timeout(Duration::from_secs(60));
    let gw = start(opts).await;

    let mut idle = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    idle.write_all(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let first = bounded(read_response(&mut idle)).await;
    assert_eq!(first.status, Some(200));

    // A stream that waits for the test between its events.
    let mut streaming = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    streaming
        .write_all(b"GET /sse/gated HTTP/1.1\r\nhost: gw\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    up.wait_for_calls(2).await;

    advance(Duration::from_secs(20)).await;
    let closed = bounded(read_response(&mut idle)).await;
    assert!(
        closed.status.is_none() && closed.body.is_empty(),
        "{closed:?}"
    );

    up.release();
    let stream = bounded(read_response(&mut streaming)).await;
    assert_eq!(stream.status, Some(200));
    assert!(
        stream.text().ends_with("data: [DONE]\n\n"),
        "{}",
        stream.text()
    );
}
