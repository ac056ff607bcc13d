//! Three gateway stacks in one process sharing fleet state through the
//! in-memory store, on tokio's paused clock: one scripted upstream notes
//! which replica sent each request, a round-robin driver calls them in
//! turn. Each figure is measured with sharing off and on:
//!
//! - **leak after trip**: requests B and C still send after A's breaker
//!   opened (≤ 2 each with sharing);
//! - **the half-open probe**: one replica of the fleet probes, the others
//!   wait for it;
//! - **hold obedience**: requests any replica sends after a hold was learnt
//!   (plus a 1 s propagation window) and before its reset (0 with sharing);
//! - **fleet rate**: `rpm = L` on every replica, the fleet offered 3 L for
//!   a minute: the upstream (keeping to L a minute) refuses none, and the
//!   fleet sends at least 0.9 L in the minute.
#![cfg(all(feature = "fleet", feature = "pacing", feature = "retry"))]

mod support;

use std::time::Duration;

use support::replicas::{drive, replicas, Replica, Script};
use tokio::time::{advance, Instant};
use tower_http_resilience::circuit_breaker::CircuitState;
use tower_http_resilience::fleet::{FleetMirror, MemoryStore};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// Three mirrors of one fleet, or none.
fn mirrors(store: Option<&MemoryStore>) -> [Option<FleetMirror>; 3] {
    let one = || store.map(|s| FleetMirror::builder("test").memory(s).unwrap());
    [one(), one(), one()]
}

fn all(rs: &[Replica]) -> Vec<&Replica> {
    rs.iter().collect()
}

/// Lets the mirrors' background tasks run.
async fn settle() {
    tokio::time::sleep(MS).await;
}

/// Requests replica `i` sent after `after` (from the upstream's start).
fn sent_after(script: &Script, i: usize, after: Duration) -> usize {
    script
        .received()
        .iter()
        .filter(|&&(r, at)| r == i && at > after)
        .count()
}

/// A's breaker opens first (its window is empty; B's and C's hold 20
/// successes each); the requests B and C send after that.
async fn leak_after_trip(share: bool) -> (usize, usize) {
    let script = Script::new();
    let store = MemoryStore::new();
    let rs = replicas(&script.upstream, mirrors(share.then_some(&store)), 0);
    settle().await;
    drive(&[&rs[1], &rs[2]], 0, 100 * MS, 40).await;
    script.set_dead(true);
    drive(&all(&rs), 0, 100 * MS, 150).await;
    let opened = rs[0].opened.lock().unwrap().expect("a's breaker opened");
    let after = script.since_start(opened);
    for (i, r) in rs.iter().enumerate().skip(1) {
        let theirs = r.opened.lock().unwrap().expect("b and c opened too");
        assert!(theirs >= opened, "replica {i} opened before a");
    }
    (sent_after(&script, 1, after), sent_after(&script, 2, after))
}

#[tokio::test(start_paused = true)]
async fn leak_after_trip_sharing_off_vs_on() {
    let off = leak_after_trip(false).await;
    let on = leak_after_trip(true).await;
    eprintln!("leak after trip (requests of b, c after a opened): off {off:?}, on {on:?}");
    assert!(on.0 <= 2 && on.1 <= 2, "with sharing: {on:?}");
    assert!(
        off.0 >= 10 && off.1 >= 10,
        "without sharing each finds out alone: {off:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_replica_probes_for_the_fleet_and_its_success_lets_the_others_close() {
    let script = Script::new();
    let store = MemoryStore::new();
    let rs = replicas(&script.upstream, mirrors(Some(&store)), 0);
    settle().await;
    script.set_dead(true);
    drive(&all(&rs), 0, 100 * MS, 60).await;
    let opened = rs[0].opened.lock().unwrap().expect("a's breaker opened");
    for r in &rs {
        assert_eq!(r.breakers.state(""), Some(CircuitState::Open));
    }

    // The upstream is back, slowly; the open time passes.
    script.set_dead(false);
    script.delay(500 * MS);
    tokio::time::sleep_until(opened + Duration::from_secs(30)).await;
    let half = script.since_start(Instant::now());
    let calls = drive(&all(&rs), 0, 50 * MS, 60).await;

    let after: Vec<(usize, Duration)> = script
        .received()
        .into_iter()
        .filter(|&(_, at)| at >= half)
        .collect();
    let (prober, probe_at) = after[0];
    let during: Vec<_> = after
        .iter()
        .filter(|&&(_, at)| at < probe_at + 500 * MS)
        .collect();
    assert_eq!(during.len(), 1, "one probe for the fleet: {after:?}");
    // The others probe once each after the first probe succeeded, then all
    // are closed and serve.
    for r in &rs {
        assert_eq!(r.breakers.state(""), Some(CircuitState::Closed));
    }
    eprintln!("the fleet's probe: replica {prober} at {probe_at:?}; then {after:?}");
    let last = calls.iter().rev().take(9);
    assert!(last.clone().all(|c| c.outcome == Ok(200)), "{calls:?}");
}

/// The upstream says at `t0` that it refuses calls for 10 s; the driver
/// calls a replica every 600 ms. Returns the requests sent between the
/// first 429 plus 1 s and the reset, and the 429s sent.
async fn hold_obedience(share: bool) -> (usize, usize) {
    let script = Script::new();
    let store = MemoryStore::new();
    let rs = replicas(&script.upstream, mirrors(share.then_some(&store)), 0);
    settle().await;
    drive(&all(&rs), 0, 100 * MS, 6).await;
    let reset = script.since_start(Instant::now()) + 10 * SEC;
    script.limit_for(10 * SEC);
    let calls = drive(&all(&rs), 0, 600 * MS, 30).await;
    assert!(calls.iter().all(|c| c.outcome == Ok(200)), "{calls:?}");

    let limited = script.refused();
    let first = *limited.first().expect("a 429");
    let within = script
        .received()
        .iter()
        .filter(|&&(_, at)| at > first + SEC && at < reset)
        .count();
    (within, limited.len())
}

#[tokio::test(start_paused = true)]
async fn hold_obedience_sharing_off_vs_on() {
    let off = hold_obedience(false).await;
    let on = hold_obedience(true).await;
    eprintln!(
        "hold obedience (requests after the propagation window, 429s): off {off:?}, on {on:?}"
    );
    assert_eq!(on, (0, 1), "with sharing one 429 holds the fleet");
    assert!(off.0 >= 1 && off.1 >= 3, "without sharing: {off:?}");
}

/// `rpm = 60` on every replica, the fleet offered 180 calls in a minute,
/// the upstream keeping to 60 a minute: the 429s it sends and the calls it
/// served in the first minute.
async fn fleet_rate(share: bool) -> (usize, usize) {
    let script = Script::new();
    script.keep_rate(60);
    let store = MemoryStore::new();
    let rs = replicas(&script.upstream, mirrors(share.then_some(&store)), 60);
    settle().await;
    let start = script.since_start(Instant::now());
    drive(&all(&rs), 0, SEC / 3, 180).await;
    let served = script
        .served()
        .iter()
        .filter(|&&at| at >= start && at < start + 60 * SEC)
        .count();
    (script.refused().len(), served)
}

#[tokio::test(start_paused = true)]
async fn fleet_rate_sharing_off_vs_on() {
    let off = fleet_rate(false).await;
    let on = fleet_rate(true).await;
    eprintln!(
        "fleet rate, L = 60 (429s from the upstream, served in the minute): off {off:?}, on {on:?}"
    );
    assert_eq!(on.0, 0, "the fleet keeps to the rate");
    assert!(on.1 >= 54, "and uses at least 0.9 of it: {on:?}");
    assert!(
        off.0 > 0,
        "three replicas alone send three times the rate: {off:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_leaves_every_call_to_local_state() {
    let script = Script::new();
    let store = MemoryStore::new();
    let rs = replicas(&script.upstream, mirrors(Some(&store)), 600);
    settle().await;
    drive(&all(&rs), 0, 50 * MS, 30).await;
    store.set_available(false);
    advance(SEC).await;
    let calls = drive(&all(&rs), 0, 50 * MS, 60).await;
    assert!(
        calls
            .iter()
            .all(|c| c.outcome == Ok(200) && c.latency <= 20 * MS),
        "answered at once, as with local state: {calls:?}"
    );
    // A breaker trip during the outage stays local, and reaches the others
    // once the store is back.
    rs[0].breakers.force_open("", Duration::from_secs(30));
    settle().await;
    assert_eq!(rs[1].breakers.state(""), Some(CircuitState::Closed));
    store.set_available(true);
    advance(1100 * MS).await;
    settle().await;
    assert_eq!(rs[1].breakers.state(""), Some(CircuitState::Open));
}
