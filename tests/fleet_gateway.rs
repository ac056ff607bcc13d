//! The gateway binary with `--redis`: two processes share a breaker trip
//! through a real `redis-server` (one per test, on a unix socket), and each
//! says an outage of the server once each way on stderr, exactly
//! `fleet state unavailable: …` and `fleet state restored`.
//!
//! Waits are for conditions, bounded by a deadline; nothing asserts a
//! wall-clock duration.
#![cfg(all(
    feature = "redis",
    feature = "stack",
    feature = "collect",
    feature = "hyper-util"
))]

mod support;

include!("support/gateway_modules.rs");

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{Plan, RedisServer, Upstream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One gateway process and the lines it wrote on stderr.
struct Gateway {
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl Gateway {
    async fn start(upstream: SocketAddr, redis: &str) -> Gateway {
        let bin = gateway_harness::example_binary();
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--max-retries", "0"])
            .args(["--breaker-min-calls", "2", "--breaker-open", "60s"])
            .arg("--upstream")
            .arg(format!("http://{upstream}"))
            .args(["--redis", redis])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} (built by `cargo test`): {e}", bin.display()));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = out.next_line().await.unwrap().unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{first}"))
            .parse()
            .unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
        Gateway {
            addr,
            stderr,
            _child: child,
        }
    }

    /// Its stderr lines about the fleet.
    fn fleet_lines(&self) -> Vec<String> {
        let lines = self.stderr.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with("fleet state"))
            .cloned()
            .collect()
    }

    /// One chat completion: the status and the envelope's code.
    async fn call(&self) -> (u16, String) {
        let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let req = Request::post(format!("http://{}/v1/chat/completions", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let (parts, body) = support::send(req).await;
        let code = support::envelope(&body)["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (parts.status.as_u16(), code)
    }
}

/// Waits until `cond` holds, at most 20 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_a_trip_through_redis_and_say_an_outage_once_each_way() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let up = Upstream::always(Plan::status(503));
    let up_addr = support::spawn_server({
        let up = up.clone();
        move || up
    });
    let a = Gateway::start(up_addr, &server.url()).await;
    let b = Gateway::start(up_addr, &server.url()).await;
    eventually("the gateways connect", async || {
        // A gateway that reached the store once says nothing until it fails.
        a.fleet_lines().is_empty() && b.fleet_lines().is_empty()
    })
    .await;

    // Two failures open a's breaker; b learns it and calls nobody.
    assert_eq!(a.call().await.0, 503);
    assert_eq!(a.call().await.0, 503);
    assert_eq!(a.call().await, (503, "circuit_open".to_owned()));
    let sent = up.calls();
    eventually("b learns a's trip", async || {
        b.call().await.1 == "circuit_open"
    })
    .await;
    assert!(
        up.calls() <= sent + 1,
        "b sent at most one call before it learnt"
    );

    server.kill();
    eventually("both say the store is away", async || {
        a.fleet_lines().len() == 1 && b.fleet_lines().len() == 1
    })
    .await;
    server.restart();
    eventually("both say it is back", async || {
        a.fleet_lines().len() == 2 && b.fleet_lines().len() == 2
    })
    .await;
    // Still answered from local state meanwhile, and the trip stays.
    assert_eq!(b.call().await.1, "circuit_open");
    for g in [&a, &b] {
        let lines = g.fleet_lines();
        assert!(
            lines[0].starts_with("fleet state unavailable: "),
            "{lines:?}"
        );
        assert_eq!(lines[1], "fleet state restored");
    }
}
