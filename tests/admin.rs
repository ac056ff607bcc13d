//! The gateway's admin listener (`--admin-listen`): `/healthz`, `/metrics`
//! and `/breakers` on their own address, never on `--listen`.
//!
//! The endpoints' answers are checked in-process on the paused clock (exact
//! times left open); the listener itself through the example binary, on
//! 127.0.0.1 ports it picks.

#![cfg(feature = "full")]

mod support;

include!("support/gateway_modules.rs");

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::AsyncBufReadExt;
use tower_http_resilience::circuit_breaker::{CircuitBreakerLayer, CircuitState};

const SEC: Duration = Duration::from_secs(1);

/// The admin endpoints of a layer's breakers, with a recorder of their own.
fn admin_of(layer: &CircuitBreakerLayer) -> admin::Admin {
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    admin::Admin::new(metrics, layer.handle())
}

async fn answer(admin: &admin::Admin, method: Method, path: &str) -> (u16, String, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    let res = admin.answer(&req);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body)
}

#[tokio::test(start_paused = true)]
async fn breakers_lists_each_key_with_its_time_left_open() {
    let layer = CircuitBreakerLayer::new();
    let breakers = layer.handle();
    let admin = admin_of(&layer);
    breakers.force_open("sim-down", 30 * SEC);
    breakers.force_open("gpt-4o", SEC);
    breakers.force_closed("gpt-4o");
    tokio::time::advance(10 * SEC).await;

    let (status, content_type, body) = answer(&admin, Method::GET, "/breakers").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        list,
        serde_json::json!([
            {"key": "gpt-4o", "state": "closed", "calls": 0, "failures": 0, "open_for_ms": null},
            {"key": "sim-down", "state": "open", "calls": 0, "failures": 0, "open_for_ms": 20_000},
        ])
    );

    // Once the time is up, the breaker lets a probe through: half-open.
    tokio::time::advance(20 * SEC).await;
    let (_, _, body) = answer(&admin, Method::GET, "/breakers").await;
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list[1]["state"], "half-open");
    assert_eq!(breakers.state("sim-down"), Some(CircuitState::HalfOpen));
}

#[tokio::test(start_paused = true)]
async fn healthz_metrics_and_the_rest() {
    let layer = CircuitBreakerLayer::new();
    let admin = admin_of(&layer);
    let (status, _, body) = answer(&admin, Method::GET, "/healthz").await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    let (status, content_type, _) = answer(&admin, Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let (status, _, body) = answer(&admin, Method::GET, "/v1/chat/completions").await;
    assert_eq!(status, 404);
    assert_eq!(support::envelope(&body)["code"], "not_found");
    let req = Request::post("/healthz").body(()).unwrap();
    let res = admin.answer(&req);
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}

#[test]
fn the_admin_listen_flag() {
    let parse = |flags: &[&str]| args::parse(flags.iter().map(|f| f.to_string()));
    let Ok(args::Parsed::Run(a)) = parse(&[]) else {
        panic!("the defaults parse")
    };
    assert_eq!(a.admin_listen, None);
    let Ok(args::Parsed::Run(a)) = parse(&["--admin-listen", "127.0.0.1:9090"]) else {
        panic!("an address parses")
    };
    assert_eq!(a.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
    let err = parse(&["--admin-listen", "localhost"]).unwrap_err();
    assert!(
        err.contains("--admin-listen") && err.contains("an address"),
        "{err}"
    );
    assert!(args::USAGE.contains("--admin-listen ADDR"));
}

/// The example binary with `flags` and an admin listener: its first two
/// stdout lines give both addresses.
struct Binary {
    child: tokio::process::Child,
    main: SocketAddr,
    admin: SocketAddr,
}

async fn binary(flags: &[&str]) -> Binary {
    let bin = gateway_harness::example_binary();
    let mut child = tokio::process::Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} (built by `cargo test`): {e}", bin.display()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let second = lines.next_line().await.unwrap().unwrap();
    let main = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{first}"));
    let admin = second
        .strip_prefix("admin on http://")
        .unwrap_or_else(|| panic!("{second}"));
    // The rest of stdout is read (and dropped) so that the process never
    // blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Binary {
        child,
        main: main.parse().unwrap(),
        admin: admin.parse().unwrap(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn chat(addr: SocketAddr, model: &str) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn the_binary_serves_admin_on_its_own_address_only() {
    let mut gw = binary(&["--breaker-min-calls", "2", "--max-retries", "0"]).await;
    assert_ne!(gw.main, gw.admin);
    // `sim-down` is dead on `sim`: its backup answers, and `sim`'s breaker
    // for it opens.
    for _ in 0..2 {
        let (parts, _) = support::send(chat(gw.main, "sim-down")).await;
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["x-gateway-target"], "sim-backup:gpt-4o-mini");
    }
    let (parts, body) = support::send(get(gw.admin, "/breakers")).await;
    assert_eq!(parts.status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let down = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key"] == "sim:sim-down")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(down["state"], "open");
    let left = down["open_for_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 33_000, "30 s ± 10 %: {left}");

    let (parts, body) = support::send(get(gw.admin, "/metrics")).await;
    assert_eq!(parts.status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        r#"resilience_breaker_state{key="sim:sim-down"} 1"#,
        r#"resilience_breaker_transitions_total{key="sim:sim-down",to="open"} 1"#,
        r#"resilience_calls_total{outcome="success",code="none"} 2"#,
        r#"resilience_fallbacks_total{from="sim:sim-down",to="sim-backup:gpt-4o-mini"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("# HELP resilience_breaker_state"), "{text}");

    // On the main listener the same paths are forwarded to the upstream.
    for path in ["/healthz", "/metrics", "/breakers"] {
        let (parts, body) = support::send(get(gw.main, path)).await;
        assert_eq!(parts.status, 404, "{path}");
        assert_eq!(parts.headers["x-gateway-target"], "sim", "{path}");
        assert_eq!(support::envelope(&body)["message"], "Unknown request URL");
    }
    gw.child.kill().await.unwrap();
}

#[tokio::test]
async fn healthz_answers_while_the_upstream_is_down() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut gw = binary(&["--upstream", &upstream, "--max-retries", "0"]).await;
    let (parts, body) = support::send(chat(gw.main, "gpt-4o")).await;
    assert_eq!(parts.status, 502);
    assert_eq!(support::envelope(&body)["code"], "connection_error");
    let (parts, body) = support::send(get(gw.admin, "/healthz")).await;
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"ok"[..]));
    gw.child.kill().await.unwrap();
}
