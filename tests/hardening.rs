//! The gateway in front of hostile clients and careless upstreams.
//!
//! Most tests run the gateway's own code in-process on 127.0.0.1, on the
//! test's paused and held clock (`common::hold_clock`: only
//! `tokio::time::advance` moves it), in front of an upstream on its own
//! thread; raw TCP clients send exactly the bytes an attacker would. Each
//! wait on a socket is bounded in real time (`bounded`), so a regression
//! fails instead of hanging. The tests of the process as a whole (SIGTERM,
//! peak memory) spawn the example binary.

mod common;

include!("common/gateway_modules.rs");

mod hardening {
    pub mod process;
    pub mod raw;
    pub mod upstream;
}

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{advance, Instant};
use tower_http_resilience::collect::CollectBodyLayer;

use gateway_harness::{start, Options};
use hardening::raw::{bounded, raw, read_response};
use hardening::upstream::{spawn_upstream, Upstream};

fn options(up: &Upstream) -> Options {
    Options::new(format!("http://{}", up.addr))
}

/// A complete request with `connection: close`.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
}

/// Waits until the gateway holds room for a request body: it is reading
/// one.
async fn until_reading(gw: &gateway_harness::Running) {
    bounded(async {
        while gw.bodies.buffered_bodies() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// A normal call through the gateway, by a hyper client.
async fn normal_call(gw: std::net::SocketAddr) -> StatusCode {
    let req = http::Request::post(format!("http://{gw}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"model":"m"}"#)))
        .unwrap();
    let (parts, _) = bounded(common::send(req)).await;
    parts.status
}

#[tokio::test(start_paused = true)]
async fn trickling_sockets_do_not_stop_normal_calls_and_are_closed_after_the_header_timeout() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;

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
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let mut opts = options(&up);
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
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let mut opts = options(&up);
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

#[tokio::test(start_paused = true)]
async fn a_body_that_never_ends_is_answered_408_in_time() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;

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
    let err = common::envelope(&res.body);
    assert_eq!(err["type"], "timeout_error");
    assert_eq!(up.calls(), 0);
    assert_eq!(gw.bodies.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_length_that_promises_more_than_is_sent_is_answered_408() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;

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
    common::envelope(&res.body);
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_answered_413_with_a_request_id() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;
    let res = raw(
        gw.addr,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 1073741824\r\n\
         x-request-id: big-1\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(res.status, Some(413));
    assert_eq!(res.header("x-request-id"), Some("big-1"));
    let err = common::envelope(&res.body);
    assert_eq!(err["code"], "request_too_large");
    assert_eq!(err["message"], "the request body is larger than 32MiB");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_past_the_body_budget_waits_then_gets_503_overloaded() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let mut opts = options(&up);
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
    assert_eq!(common::envelope(&small.body)["code"], "overloaded");

    up.release();
    assert_eq!(bounded(hog).await.unwrap().status, Some(200));
    assert_eq!(
        gw.bodies.buffered_bodies(),
        0,
        "memory returned when the call ended"
    );
    assert_eq!(up.calls(), 2, "the waiting call was never sent");
}

#[tokio::test(start_paused = true)]
async fn every_path_trick_is_refused_400_and_nothing_is_sent() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(Options::new(format!("http://{}/tenant-a", up.addr))).await;
    for path in [
        "/v1/../tenant-b/x",
        "/v1/%2e%2e/tenant-b/x",
        "/v1/%2E%2E/tenant-b/x",
        "/v1/..%2ftenant-b/x",
        "/v1/..%2Ftenant-b/x",
        "/v1/..%5ctenant-b/x",
        "/v1/..%5Ctenant-b/x",
        "/v1/x%00",
        "/v1/..\\tenant-b",
    ] {
        let res = raw(gw.addr, &get(path)).await;
        assert_eq!(res.status, Some(400), "{path}");
        assert!(res.header("x-request-id").is_some(), "{path}");
        let err = common::envelope(&res.body);
        assert_eq!(err["type"], "invalid_request_error", "{path}");
    }
    assert_eq!(up.calls(), 0, "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn the_prefix_and_query_are_kept_and_nothing_the_client_sends_moves_the_call() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let base = format!("http://{}/tenant-a/v1?api-version=2024-10-21", up.addr);
    let gw = start(Options::new(base)).await;

    let res = raw(gw.addr, &get("/v1/models?limit=2")).await;
    assert_eq!(res.status, Some(200));
    assert_eq!(
        up.last_target(),
        "/tenant-a/v1/models?api-version=2024-10-21&limit=2",
        "prefix kept, /v1 not doubled, query added"
    );

    // An absolute-form target, a Host and a Forwarded naming elsewhere.
    let res = raw(
        gw.addr,
        "GET http://evil.example/v1/models HTTP/1.1\r\nhost: evil.example\r\n\
         forwarded: host=evil.example;proto=https\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, Some(200));
    assert_eq!(
        up.last_target(),
        "/tenant-a/v1/models?api-version=2024-10-21"
    );
    assert_eq!(up.last_header("host"), Some(up.addr.to_string()));
}

#[tokio::test(start_paused = true)]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;
    let res = raw(
        gw.addr,
        "GET /hop HTTP/1.1\r\nhost: gw\r\nconnection: close, x-secret\r\nx-secret: 1\r\n\
         proxy-authorization: Basic dXNlcjpwYXNz\r\nproxy-connection: keep-alive\r\n\
         keep-alive: timeout=5\r\nte: trailers\r\ntrailer: x-t\r\nupgrade: websocket\r\n\
         authorization: Bearer sk-kept\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, Some(200));
    for name in [
        "x-secret",
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert_eq!(up.last_header(name), None, "{name} reached the upstream");
    }
    assert_eq!(
        up.last_header("authorization").as_deref(),
        Some("Bearer sk-kept")
    );
    assert_eq!(
        up.last_header("accept-encoding").as_deref(),
        Some("identity")
    );
    for name in ["x-up-secret", "proxy-authenticate", "keep-alive"] {
        assert_eq!(res.header(name), None, "{name} reached the client");
    }
    assert_eq!(res.header("x-up-kept"), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn connect_is_answered_405() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;
    let res = raw(
        gw.addr,
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, Some(405));
    assert_eq!(common::envelope(&res.body)["code"], "method_not_allowed");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_response_carries_a_request_id() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;
    let with_id = |id: &str| {
        format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n")
    };

    let res = raw(gw.addr, &with_id("client-7")).await;
    assert_eq!(res.status, Some(200));
    assert_eq!(
        res.header("x-request-id"),
        Some("client-7"),
        "echoed on success"
    );
    assert_eq!(up.last_header("x-request-id").as_deref(), Some("client-7"));

    let long = "x".repeat(200);
    let res = raw(gw.addr, &with_id(&long)).await;
    let id = res.header("x-request-id").unwrap();
    assert!(id.starts_with("req_") && id.len() == 36, "{id}");
    assert_eq!(res.header("x-gateway-attempts"), Some("1"));
    assert_eq!(res.header("x-gateway-target"), Some("default"));
}

#[tokio::test(start_paused = true)]
async fn the_log_line_is_written_when_the_body_ends_and_escapes_the_client() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let mut opts = options(&up);
    opts.format = log::LogFormat::Json;
    let mut gw = start(opts).await;

    // A stream lasting 20 s of (virtual) time.
    let model = "evil\\nmodel\\u001b[31m";
    let body = format!(r#"{{"model":"{model}","stream":true}}"#);
    let req = format!(
        "POST /sse/gated HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    up.wait_for_calls(1).await;
    advance(Duration::from_secs(20)).await;
    assert!(
        gw.lines.try_recv().is_err(),
        "nothing logged before the end"
    );
    up.release();
    let res = bounded(read_response(&mut s)).await;
    assert!(res.text().ends_with("data: [DONE]\n\n"));

    let line = bounded(gw.lines.recv()).await.unwrap();
    assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["model"], "evil\nmodel\u{1b}[31m");
    assert_eq!(
        (v["status"].as_u64(), v["streaming"].as_bool()),
        (Some(200), Some(true))
    );
    assert!(v["latency_ms"].as_u64().unwrap() >= 20_000, "{line}");
    assert_eq!(v["target"], "default:evil\nmodel\u{1b}[31m");
    assert_eq!(v["path"], "/sse/gated");
}

#[tokio::test(start_paused = true)]
async fn at_the_end_of_the_grace_a_stream_ends_with_a_last_error_event() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let gw = start(options(&up)).await;
    let mut s = bounded(TcpStream::connect(gw.addr)).await.unwrap();
    s.write_all(b"GET /sse/gated HTTP/1.1\r\nhost: gw\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    up.wait_for_calls(1).await;
    gw.drain.fire();
    let res = bounded(read_response(&mut s)).await;
    let text = res.text();
    let last = text.rsplit("\n\n").nth(1).unwrap();
    let err = common::envelope(last.strip_prefix("data: ").unwrap().as_bytes());
    assert_eq!(err["type"], "service_unavailable");
    assert!(!text.contains("[DONE]"));
    up.release();
}

#[tokio::test(start_paused = true)]
async fn a_compressed_event_stream_is_refused_rather_than_corrupted() {
    let _hold = common::hold_clock();
    let up = spawn_upstream();
    let mut opts = options(&up);
    opts.config = opts.config.max_retries(0);
    let gw = start(opts).await;
    let res = raw(gw.addr, &get("/sse/gzip")).await;
    assert_eq!(res.status, Some(502));
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(common::envelope(&res.body)["type"], "upstream_error");
}

#[test]
fn sigterm_lets_five_streams_finish_and_exits_0() {
    hardening::process::sigterm_lets_streams_finish(5);
}

#[test]
fn after_the_grace_a_stream_is_ended_and_the_process_exits_0() {
    hardening::process::the_grace_ends_a_stalled_stream();
}

#[test]
fn bodies_under_a_budget_keep_peak_memory_bounded() {
    hardening::process::bodies_keep_peak_memory_bounded();
}

#[test]
fn the_example_prints_its_version_and_names_an_unknown_flag() {
    hardening::process::version_and_unknown_flag();
}
