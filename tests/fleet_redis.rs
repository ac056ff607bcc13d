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

#[tokio::test]
async fn extend_script_only_extends_in_server_time() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connect(&server).await;
    let ns = namespace();
    let state = format!("thr:v1:{{{ns}}}:state");
    let script = Script::new(EXTEND);
    let member = "h:00112233445566778899aabbccddeeff";
    let hold = |wait_ms: u64| {
        let mut inv = script.key(&state);
        inv.arg(member)
            .arg(wait_ms)
            .arg(300_000)
            .arg("chan")
            .arg("h 0011");
        inv
    };
    let (c1, u1, n1): (u8, u64, u64) = hold(30_000).invoke_async(&mut con).await.unwrap();
    assert_eq!((c1, u1 - n1), (1, 30_000));
    let (c2, u2, _): (u8, u64, u64) = hold(5_000).invoke_async(&mut con).await.unwrap();
    assert_eq!((c2, u2), (0, u1), "a shorter hold changes nothing");
    let (c3, u3, n3): (u8, u64, u64) = hold(60_000).invoke_async(&mut con).await.unwrap();
    assert_eq!((c3, u3 - n3), (1, 60_000));
    let (c4, u4, n4): (u8, u64, u64) = hold(u64::MAX / 2).invoke_async(&mut con).await.unwrap();
    assert_eq!((c4, u4 - n4), (1, 300_000), "capped");
    let score: f64 = con.zscore(&state, member).await.unwrap();
    assert_eq!(score as u64, u4);
    let ttl: i64 = con.pttl(&state).await.unwrap();
    assert!(
        ttl > 299_000 && ttl <= 301_000,
        "the set lives as long as its last entry: {ttl}"
    );
    let now = server_ms(&mut con).await;
    assert!(u4 >= now, "deadlines are in the server's clock");
}

#[tokio::test]
async fn open_ends_the_probe_and_close_compares_and_deletes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connect(&server).await;
    let ns = namespace();
    let (state, probe) = (
        format!("thr:v1:{{{ns}}}:state"),
        format!("thr:v1:{{{ns}}}:probe:d"),
    );
    let (extend, close, lease) = (Script::new(EXTEND), Script::new(CLOSE), Script::new(PROBE));
    let member = "o:d";
    let open = |ms: u64| {
        let mut inv = extend.key(&state);
        inv.key(&probe)
            .arg(member)
            .arg(ms)
            .arg(3_600_000)
            .arg("chan")
            .arg("o d");
        inv
    };
    let (_, first, _): (u8, u64, u64) = open(10_000).invoke_async(&mut con).await.unwrap();
    let (granted, _): (u8, u64) = lease
        .key(&probe)
        .arg("a")
        .arg(5_000)
        .invoke_async(&mut con)
        .await
        .unwrap();
    assert_eq!(granted, 1);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let (changed, second, _): (u8, u64, u64) = open(10_000).invoke_async(&mut con).await.unwrap();
    assert_eq!(changed, 1);
    assert!(second > first);
    assert!(
        !con.exists::<_, bool>(&probe).await.unwrap(),
        "a new open ends the old probe"
    );

    let closing = |token: u64| {
        let mut inv = close.key(&state);
        inv.key(&probe)
            .arg(member)
            .arg(token)
            .arg("chan")
            .arg(format!("c d {token}"))
            .arg("b");
        inv
    };
    let stale: u8 = closing(first).invoke_async(&mut con).await.unwrap();
    assert_eq!(stale, 0, "a close of an older open ends nothing");
    assert!(con
        .zscore::<_, _, Option<f64>>(&state, member)
        .await
        .unwrap()
        .is_some());
    let (granted, _): (u8, u64) = lease
        .key(&probe)
        .arg("b")
        .arg(5_000)
        .invoke_async(&mut con)
        .await
        .unwrap();
    assert_eq!(granted, 1);
    let closed: u8 = closing(second).invoke_async(&mut con).await.unwrap();
    assert_eq!(closed, 1);
    assert!(con
        .zscore::<_, _, Option<f64>>(&state, member)
        .await
        .unwrap()
        .is_none());
    assert!(
        !con.exists::<_, bool>(&probe).await.unwrap(),
        "a close ends the probe"
    );

    // No open left: a close ends the closer's own lease, never another's.
    let take = |holder: &'static str| {
        let mut inv = lease.key(&probe);
        inv.arg(holder).arg(5_000);
        inv
    };
    let (granted, _): (u8, u64) = take("a").invoke_async(&mut con).await.unwrap();
    assert_eq!(granted, 1);
    let none: u8 = closing(0).invoke_async(&mut con).await.unwrap();
    assert_eq!(none, 0);
    assert!(
        con.exists::<_, bool>(&probe).await.unwrap(),
        "b's close leaves a's lease"
    );
    let (granted, _): (u8, u64) = take("b").invoke_async(&mut con).await.unwrap();
    assert_eq!(granted, 0);
    con.del::<_, ()>(&probe).await.unwrap();
    let (granted, _): (u8, u64) = take("b").invoke_async(&mut con).await.unwrap();
    assert_eq!(granted, 1);
    let none: u8 = closing(0).invoke_async(&mut con).await.unwrap();
    assert_eq!(none, 0);
    assert!(
        !con.exists::<_, bool>(&probe).await.unwrap(),
        "b's close ends b's own lease"
    );
}

#[tokio::test]
async fn probe_lease_is_one_per_fleet() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connect(&server).await;
    let key = format!("thr:v1:{{{}}}:probe:d", namespace());
    let probe = Script::new(PROBE);
    let ask = |holder: &str, ms: u64| {
        let mut inv = probe.key(&key);
        inv.arg(holder).arg(ms);
        inv
    };
    let a: (u8, u64) = ask("a", 200).invoke_async(&mut con).await.unwrap();
    let b: (u8, u64) = ask("b", 200).invoke_async(&mut con).await.unwrap();
    let again: (u8, u64) = ask("a", 200).invoke_async(&mut con).await.unwrap();
    assert_eq!(a, (1, 0));
    assert_eq!(b.0, 0);
    assert!(b.1 > 0 && b.1 <= 200, "time left on a's lease: {}", b.1);
    assert_eq!(again, (1, 0), "re-entrant for its holder");
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let b: (u8, u64) = ask("b", 200).invoke_async(&mut con).await.unwrap();
        if b.0 == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_leases_never_over_admit_with_concurrent_clients() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut con = connect(&server).await;
    let key = format!("thr:v1:{{{}}}:rate:d", namespace());
    // One cell per 2 ms, 10 ms ahead of schedule, leases of up to 3 cells.
    let (t_us, tau_us) = (2_000u64, 10_000u64);
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let start = s * 1_000_000 + us;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut con = connect(&server).await;
        let key = key.clone();
        clients.push(tokio::spawn(async move {
            let script = Script::new(LEASE);
            let (mut cells, mut refused) = (0u64, 0u64);
            for _ in 0..150 {
                let (k, retry): (u64, u64) = script
                    .key(&key)
                    .arg(t_us)
                    .arg(tau_us)
                    .arg(3)
                    .invoke_async(&mut con)
                    .await
                    .unwrap();
                cells += k;
                if k == 0 {
                    assert!(retry > 0 && retry <= t_us, "retry {retry}");
                    refused += 1;
                }
            }
            (cells, refused)
        }));
    }
    let (mut cells, mut refused) = (0, 0);
    for c in clients {
        let (k, r) = timeout(LIMIT, c).await.unwrap().unwrap();
        cells += k;
        refused += r;
    }
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
    let end = s * 1_000_000 + us;
    let bound = (end - start + tau_us) / t_us + 1;
    assert!(
        cells <= bound,
        "{cells} cells granted in {} us; at most {bound}",
        end - start
    );
    assert!(
        cells > 0 && refused > 0,
        "the limiter was saturated: {cells} granted, {refused} refused"
    );
}

#[tokio::test]
async fn replicas_share_holds_trips_probes_and_closes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let ns = namespace();
    let [a, b, c] = [
        mirror(&server, &ns),
        mirror(&server, &ns),
        mirror(&server, &ns),
    ];
    eventually("the mirrors connect", || {
        a.is_available() && b.is_available() && c.is_available()
    })
    .await;

    let until = Instant::now() + Duration::from_secs(30);
    a.publish_hold("sk-secret-123", until);
    eventually("b learns the hold", || {
        b.held_until("sk-secret-123").is_some()
    })
    .await;
    eventually("c learns the hold", || {
        c.held_until("sk-secret-123").is_some()
    })
    .await;
    let learnt = b.held_until("sk-secret-123").unwrap();
    assert!(learnt >= until - Duration::from_millis(2) && learnt <= until + Duration::from_secs(1));

    // No key material in Redis: names and members carry digests only.
    let mut con = connect(&server).await;
    let keys: Vec<String> = con.keys("*").await.unwrap();
    let members: Vec<String> = con
        .zrange(format!("thr:v1:{{{ns}}}:state"), 0, -1)
        .await
        .unwrap();
    for text in keys.iter().chain(&members) {
        assert!(!text.contains("secret"), "{text}");
    }

    a.publish_opened("gpt-4o", Instant::now() + Duration::from_millis(300));
    eventually("c sees the open", || {
        c.breaker_open_until("gpt-4o").is_some()
    })
    .await;
    eventually("the open expires", || {
        c.breaker_open_until("gpt-4o")
            .is_none_or(|t| t <= Instant::now())
    })
    .await;
    let fleet = [&a, &b, &c];
    let mut granted = Vec::new();
    for (i, m) in fleet.iter().enumerate() {
        let p = timeout(LIMIT, m.probe("gpt-4o", Duration::from_secs(5)))
            .await
            .unwrap();
        match p {
            Probe::Granted => granted.push(i),
            Probe::Denied(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(granted.len(), 1, "one probe for the fleet");
    let (prober, other) = (fleet[granted[0]], fleet[(granted[0] + 1) % 3]);

    // Another replica trips again; the prober closes the open it learnt.
    other.publish_opened("gpt-4o", Instant::now() + Duration::from_secs(30));
    eventually("every replica sees the new open", || {
        fleet.iter().all(|m| {
            m.breaker_trip("gpt-4o")
                .is_some_and(|t| t.until() > Instant::now())
        })
    })
    .await;
    let trip = prober.breaker_trip("gpt-4o").unwrap();
    prober.publish_closed("gpt-4o", Some(trip));
    eventually("every replica sees the close", || {
        [&a, &b, &c]
            .iter()
            .all(|m| m.breaker_open_until("gpt-4o").is_none())
    })
    .await;
}

#[tokio::test]
async fn a_fleet_rate_through_mirrors_stays_under_the_bound() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let ns = namespace();
    let fleet = [
        mirror(&server, &ns),
        mirror(&server, &ns),
        mirror(&server, &ns),
    ];
    eventually("the mirrors connect", || {
        fleet.iter().all(|m| m.is_available())
    })
    .await;
    // 6 000 a minute: one per 10 ms, burst 20 (200 ms ahead).
    let rate = Rate::per_minute(6_000).burst(20);
    let start = Instant::now();
    let mut granted = 0u64;
    for i in 0..600 {
        let permit = timeout(LIMIT, fleet[i % 3].acquire("sk-key-1", rate))
            .await
            .unwrap();
        if permit == Permit::Granted {
            granted += 1;
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let elapsed = start.elapsed();
    // (W + τ) / T + 1, with W the local time the loop took.
    let bound = (elapsed.as_millis() as u64 + 200) / 10 + 1;
    assert!(
        granted > 0 && granted <= bound,
        "{granted} granted in {elapsed:?}; at most {bound}"
    );
}

#[tokio::test]
async fn scripts_load_again_after_a_script_flush() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let ns = namespace();
    let (a, notices) = noticed(&server, &ns);
    let b = mirror(&server, &ns);
    eventually("the mirrors connect", || {
        a.is_available() && b.is_available()
    })
    .await;
    a.publish_hold("k1", Instant::now() + Duration::from_secs(30));
    eventually("the first hold", || b.held_until("k1").is_some()).await;
    assert!(server
        .command(&["SCRIPT", "FLUSH"])
        .unwrap()
        .starts_with("+OK"));
    a.publish_hold("k2", Instant::now() + Duration::from_secs(30));
    eventually("a hold after the flush", || b.held_until("k2").is_some()).await;
    assert_eq!(
        notices.lines(),
        Vec::<String>::new(),
        "NOSCRIPT is no outage"
    );
}

#[tokio::test]
async fn mirrors_reconnect_after_the_server_is_killed_and_restarted() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let ns = namespace();
    let (a, notices) = noticed(&server, &ns);
    let b = mirror(&server, &ns);
    eventually("the mirrors connect", || {
        a.is_available() && b.is_available()
    })
    .await;
    server.kill();
    eventually("a notices", || {
        notices.count("fleet state unavailable") == 1
    })
    .await;
    server.restart();
    eventually("a is restored", || {
        notices.count("fleet state restored") == 1
    })
    .await;
    a.publish_hold("k", Instant::now() + Duration::from_secs(30));
    eventually("b learns a hold made after the restart", || {
        b.held_until("k").is_some()
    })
    .await;
    b.publish_opened("m", Instant::now() + Duration::from_secs(30));
    eventually("a learns an open made after the restart", || {
        a.breaker_open_until("m").is_some()
    })
    .await;
    assert_eq!(notices.count("fleet state unavailable"), 1);
    assert_eq!(notices.count("fleet state restored"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_never_blocks_a_call_and_is_said_once_each_way() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let ns = namespace();
    let ((a, notices_a), (b, notices_b)) = (noticed(&server, &ns), noticed(&server, &ns));
    eventually("the mirrors connect", || {
        a.is_available() && b.is_available()
    })
    .await;

    server.freeze();
    let hold = Instant::now() + Duration::from_secs(60);
    for i in 0..1_000 {
        let key = format!("k{}", i % 10);
        a.publish_hold(&key, hold);
        assert!(a.held_until(&key).is_some());
        assert_eq!(b.breaker_open_until("m"), None);
    }
    // Leases answer within their timeout (20 ms), far inside this bound.
    let p = timeout(Duration::from_secs(2), a.acquire("r", Rate::per_minute(60))).await;
    assert_eq!(p, Ok(Permit::Unavailable));
    let p = timeout(Duration::from_secs(2), a.probe("m", Duration::from_secs(1))).await;
    assert_eq!(p, Ok(Probe::Unavailable));
    eventually("both notice", || {
        notices_a.count("fleet state unavailable") == 1
            && notices_b.count("fleet state unavailable") == 1
    })
    .await;
    assert!(a.held_until("k3").is_some(), "local state goes on");

    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    eventually("both are restored", || {
        notices_a.count("fleet state restored") == 1 && notices_b.count("fleet state restored") == 1
    })
    .await;
    eventually("holds made during the outage reach b", || {
        (0..10).all(|i| b.held_until(&format!("k{i}")).is_some())
    })
    .await;
    for notices in [&notices_a, &notices_b] {
        let lines = notices.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("fleet state unavailable: "));
        assert_eq!(lines[1], "fleet state restored");
    }
}
