//! Three gateway stacks in one process sharing fleet state through a real
//! `redis-server` (one per test, on a unix socket), each with its own mirror
//! and connection, in real time, bounded in calls and seconds:
//!
//! - **fleet rate**: `rpm` on every replica, the fleet offered three times
//!   the rate: what the fleet sends keeps to the fleet's rate in every
//!   window, the upstream refuses nothing, and at least 0.9 of the rate is
//!   used;
//! - **outage**: the server is frozen (SIGSTOP), then killed, then started
//!   again on the same socket, while calls go on: every call is answered as
//!   with local state, each mirror says one line each way, and the
//!   latencies of each phase are printed (not asserted: timings are the
//!   machine's).
#![cfg(all(feature = "redis", feature = "pacing", feature = "retry"))]

mod support;

use std::time::Duration;

use support::replicas::{drive, replicas, Call, Replica, Script};
use support::{Notices, RedisServer};
use tower_http_resilience::fleet::FleetMirror;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn namespace() -> String {
    format!("t{:016x}", fastrand::u64(..))
}

fn all(rs: &[Replica]) -> Vec<&Replica> {
    rs.iter().collect()
}

/// Waits until `cond` holds, at most 10 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + 10 * SEC;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(5 * MS).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rate_on_redis_keeps_to_its_bound_in_every_window() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let ns = namespace();
    // A loaded machine may answer slowly: a lease that times out would
    // leave the call to the replica's own rate.
    let mirror = || {
        FleetMirror::builder(&ns)
            .lease_timeout(SEC)
            .redis(&server.url())
            .unwrap()
    };
    let mirrors = [mirror(), mirror(), mirror()];
    eventually("the mirrors connect", || {
        mirrors.iter().all(FleetMirror::is_available)
    })
    .await;
    let script = Script::new();
    script.keep_rate(120);
    let [a, b, c] = mirrors;
    let rs = replicas(&script.upstream, [Some(a), Some(b), Some(c)], 120);

    // rpm 120: the fleet's rate is a burst of 6 ahead of 114 every 61 s,
    // one cell every 61 s / 114. Offered 6 a second for 8 s.
    let start = script.since_start(tokio::time::Instant::now());
    let calls = drive(&all(&rs), 0, SEC / 6, 48).await;
    assert!(calls.iter().all(|c| c.latency <= 70 * SEC));
    let served: Vec<Duration> = script
        .served()
        .into_iter()
        .filter(|&t| t >= start)
        .collect();
    assert!(script.refused().is_empty(), "the upstream refused none");
    let interval = Duration::from_secs(61) / 114;
    for (i, &t) in served.iter().enumerate() {
        for w in 1..=8u32 {
            let window = SEC * w;
            let n = served[i..].iter().take_while(|&&u| u < t + window).count();
            let bound = (window + interval * 6).as_secs_f64() / interval.as_secs_f64() + 1.0;
            assert!(n as f64 <= bound, "{n} calls in {window:?} from {t:?}");
        }
    }
    let in_run = served.iter().filter(|&&t| t < start + 8 * SEC).count();
    let steady = (8 * SEC).as_secs_f64() / interval.as_secs_f64();
    eprintln!(
        "fleet rate on redis: {in_run} served in 8 s (steady pace {steady:.1}), none refused"
    );
    assert!(in_run as f64 >= 0.9 * steady, "{in_run} of {steady:.1}");
}

/// The 50th and 99th percentile latencies of `calls`, in milliseconds.
fn percentiles(calls: &[&Call]) -> (f64, f64) {
    let mut ms: Vec<f64> = calls
        .iter()
        .map(|c| c.latency.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Calls every 10 ms for 4.5 s while the server is frozen (at 1 s), killed
/// (at 2 s) and started again (at 2.5 s); returns the calls and each
/// mirror's notices.
async fn outage(rpm: u32) -> (Vec<Call>, [Notices; 3]) {
    let Some(mut server) = RedisServer::start() else {
        return (Vec::new(), Default::default());
    };
    let ns = namespace();
    let notices: [Notices; 3] = Default::default();
    let mirror = |n: &Notices| {
        FleetMirror::builder(&ns)
            .poll_interval(100 * MS)
            .on_notice(n.hook())
            .redis(&server.url())
            .unwrap()
    };
    let mirrors = [
        mirror(&notices[0]),
        mirror(&notices[1]),
        mirror(&notices[2]),
    ];
    eventually("the mirrors connect", || {
        mirrors.iter().all(FleetMirror::is_available)
    })
    .await;
    let script = Script::new();
    let [a, b, c] = mirrors.clone();
    let rs = replicas(&script.upstream, [Some(a), Some(b), Some(c)], rpm);

    let each = all(&rs);
    let calls = drive(&each, 0, 10 * MS, 450);
    let faults = async {
        tokio::time::sleep(SEC).await;
        server.freeze();
        tokio::time::sleep(SEC).await;
        server.kill();
        tokio::time::sleep(SEC / 2).await;
        server.restart();
    };
    let (calls, ()) = tokio::join!(calls, faults);
    eventually("the mirrors are back", || {
        mirrors.iter().all(FleetMirror::is_available)
    })
    .await;
    (calls, notices)
}

async fn outage_is_local(rpm: u32) {
    let (calls, notices) = outage(rpm).await;
    if calls.is_empty() {
        return;
    }
    let bad: Vec<_> = calls.iter().filter(|c| c.outcome != Ok(200)).collect();
    assert!(bad.is_empty(), "every call is answered: {bad:?}");
    for n in &notices {
        assert_eq!(n.count("fleet state unavailable: "), 1, "{:?}", n.lines());
        assert_eq!(n.count("fleet state restored"), 1, "{:?}", n.lines());
        assert_eq!(n.lines().len(), 2, "{:?}", n.lines());
    }
    let phase = |from: Duration, to: Duration| -> Vec<&Call> {
        calls.iter().filter(|c| c.at >= from && c.at < to).collect()
    };
    let phases = [
        ("store up", phase(Duration::ZERO, SEC)),
        ("frozen", phase(SEC, 2 * SEC)),
        ("killed", phase(2 * SEC, 2 * SEC + SEC / 2)),
        ("restarted", phase(2 * SEC + SEC / 2, 5 * SEC)),
    ];
    for (name, calls) in phases {
        let (p50, p99) = percentiles(&calls);
        let slow = calls.iter().filter(|c| c.latency > 10 * MS).count();
        eprintln!(
            "outage, rpm {rpm}: {name:>9}: {} calls, p50 {p50:.2} ms, p99 {p99:.2} ms, {slow} over 10 ms",
            calls.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_leaves_every_call_to_local_state() {
    outage_is_local(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_with_a_fleet_rate_leaves_every_call_to_local_state() {
    // A rate far above the offered calls: each call takes a fleet cell,
    // and the replica's own rate while the store is away.
    outage_is_local(60_000).await;
}
