//! What a request cannot do: leave the prefix, choose the upstream, pass
//! hop-by-hop headers on, tunnel; and the request id it always gets back.

use super::raw::{get, raw};
use super::upstream::spawn_upstream;
use crate::gateway_harness::{start, Options};
use crate::support;

#[tokio::test(start_paused = true)]
async fn every_path_trick_is_refused_400_and_nothing_is_sent() {
    let _hold = support::hold_clock();
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
        let err = support::envelope(&res.body);
        assert_eq!(err["type"], "invalid_request_error", "{path}");
    }
    assert_eq!(up.calls(), 0, "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn the_prefix_and_query_are_kept_and_nothing_the_client_sends_moves_the_call() {
    let _hold = support::hold_clock();
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
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;
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
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;
    let res = raw(
        gw.addr,
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, Some(405));
    assert_eq!(support::envelope(&res.body)["code"], "method_not_allowed");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_response_carries_a_request_id() {
    let _hold = support::hold_clock();
    let up = spawn_upstream();
    let gw = start(up.options()).await;
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
