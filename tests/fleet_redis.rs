//! Fleet state on a real `redis-server` (started per test on a unix socket,
//! random namespaces): each script's semantics, replicas sharing through the
//! server, `NOSCRIPT` after a script flush, reconnecting after the server is
//! killed and restarted, and an outage (frozen, then killed) during which
//! every mirror call answers at once and each mirror says one line each way.
//!
//! Waits are for conditions, bounded by a deadline; nothing asserts a
//! wall-clock duration.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Script};
use support::Notices;
use support::RedisServer;
use tokio::time::{timeout, Instant};
use tower_http_resilience::fleet::{FleetMirror, Permit, Probe, Rate};

const EXTEND: &str = include_str!("../src/fleet/redis/extend.lua");
const CLOSE: &str = include_str!("../src/fleet/redis/close.lua");
const PROBE: &str = include_str!("../src/fleet/redis/probe.lua");
const LEASE: &str = include_str!("../src/fleet/redis/lease.lua");

/// Bounds a test that waits on a real server.
const LIMIT: Duration = Duration::from_secs(10);

fn namespace() -> String {
    format!("t{:016x}", fastrand::u64(..))
}

async fn connect(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn server_ms(con: &mut MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
    s * 1000 + us / 1000
}

/// Waits until `cond` holds, at most `LIMIT`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A mirror for the semantics tests: lease and probe answers get time to
/// arrive on a loaded machine (the outage tests keep the short defaults).
fn mirror(server: &RedisServer, ns: &str) -> FleetMirror {
    FleetMirror::builder(ns)
        .poll_interval(Duration::from_millis(100))
        .lease_timeout(Duration::from_secs(2))
        .redis(&server.url())
        .unwrap()
}

/// A mirror whose notices are recorded.
fn noticed(server: &RedisServer, ns: &str) -> (FleetMirror, Notices) {
    let notices = Notices::default();
    let mirror = FleetMirror::builder(ns)
        .poll_interval(Duration::from_millis(100))
        .on_notice(notices.hook())
        .redis(&server.url())
        .unwrap();
    (mirror, notices)
}

mod fleet_redis {
    mod mirrors;
    mod scripts;
}
