//! Fleet state between replicas in one process (the in-memory store), on
//! tokio's paused clock: what one replica publishes, the others read; holds
//! only extend; one probe per fleet; closes end exactly the open they saw;
//! fleet-wide rates never over-admit; an outage is said once each way and
//! the fleet converges within one poll interval after it.
#![cfg(feature = "fleet")]

mod support;

use std::time::Duration;

use support::Notices;
use tokio::time::{advance, sleep, Instant};
use tower_http_resilience::fleet::{FleetMirror, MemoryStore, Permit, Probe, Rate};

fn replica(store: &MemoryStore) -> FleetMirror {
    FleetMirror::builder("test").memory(store).unwrap()
}

fn replicas(store: &MemoryStore) -> [FleetMirror; 3] {
    [replica(store), replica(store), replica(store)]
}

/// Lets every background task run (the paused clock moves on only once all
/// of them wait).
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

fn near(a: Option<Instant>, b: Instant) -> bool {
    a.is_some_and(|a| a >= b && a <= b + Duration::from_millis(5))
}

#[tokio::test(start_paused = true)]
async fn a_hold_reaches_every_replica_and_only_extends() {
    let store = MemoryStore::new();
    let [a, b, c] = replicas(&store);
    settle().await;
    let t0 = Instant::now();
    a.publish_hold("sk-key-1", t0 + Duration::from_secs(30));
    assert_eq!(
        a.held_until("sk-key-1"),
        Some(t0 + Duration::from_secs(30)),
        "at once, locally"
    );
    settle().await;
    assert!(near(b.held_until("sk-key-1"), t0 + Duration::from_secs(30)));
    assert!(near(c.held_until("sk-key-1"), t0 + Duration::from_secs(30)));

    b.publish_hold("sk-key-1", t0 + Duration::from_secs(5));
    settle().await;
    for m in [&a, &b, &c] {
        assert!(
            near(m.held_until("sk-key-1"), t0 + Duration::from_secs(30)),
            "never shortened"
        );
    }
    c.publish_hold("sk-key-1", t0 + Duration::from_secs(60));
    settle().await;
    for m in [&a, &b, &c] {
        assert!(
            near(m.held_until("sk-key-1"), t0 + Duration::from_secs(60)),
            "extended"
        );
    }
    assert_eq!(a.held_until("sk-key-2"), None);
}

#[tokio::test(start_paused = true)]
async fn holds_are_capped_at_five_minutes_for_the_fleet() {
    let store = MemoryStore::new();
    let [a, b, _] = replicas(&store);
    settle().await;
    let t0 = Instant::now();
    a.publish_hold("k", t0 + Duration::from_secs(3600));
    settle().await;
    assert!(near(b.held_until("k"), t0 + Duration::from_secs(300)));
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_joins_later_learns_live_state() {
    let store = MemoryStore::new();
    let a = replica(&store);
    settle().await;
    let t0 = Instant::now();
    a.publish_opened("gpt-4o", t0 + Duration::from_secs(20));
    a.publish_hold("sk-key-1", t0 + Duration::from_secs(10));
    settle().await;
    let late = replica(&store);
    settle().await;
    assert!(near(
        late.breaker_open_until("gpt-4o"),
        t0 + Duration::from_secs(20)
    ));
    assert!(near(
        late.held_until("sk-key-1"),
        t0 + Duration::from_secs(10)
    ));
}

#[tokio::test(start_paused = true)]
async fn one_probe_per_fleet_and_the_prober_closes_exactly_its_trip() {
    let store = MemoryStore::new();
    let [a, b, c] = replicas(&store);
    settle().await;
    let t0 = Instant::now();
    a.publish_opened("gpt-4o", t0 + Duration::from_secs(30));
    settle().await;
    for m in [&a, &b, &c] {
        assert!(near(
            m.breaker_open_until("gpt-4o"),
            t0 + Duration::from_secs(30)
        ));
    }
    advance(Duration::from_secs(30)).await;

    let mut granted = Vec::new();
    for m in [&a, &b, &c] {
        match m.probe("gpt-4o", Duration::from_secs(5)).await {
            Probe::Granted => granted.push(m.clone()),
            Probe::Denied(left) => assert!(left <= Duration::from_secs(5)),
            Probe::Unavailable => panic!("the store is up"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(granted.len(), 1, "one probe for the whole fleet");
    let prober = &granted[0];

    // The open expired everywhere; reopen and let the prober see the trip.
    let t1 = Instant::now();
    b.publish_opened("gpt-4o", t1 + Duration::from_secs(10));
    settle().await;
    let seen = prober.breaker_trip("gpt-4o").expect("open");
    // A newer open replaces it before the prober closes: the close is stale.
    advance(Duration::from_millis(50)).await;
    c.publish_opened("gpt-4o", Instant::now() + Duration::from_secs(10));
    settle().await;
    prober.publish_closed("gpt-4o", Some(seen));
    settle().await;
    for m in [&a, &b, &c] {
        assert!(
            m.breaker_open_until("gpt-4o").is_some(),
            "a stale close ends nothing"
        );
    }
    let current = prober.breaker_trip("gpt-4o").expect("open");
    prober.publish_closed("gpt-4o", Some(current));
    settle().await;
    for m in [&a, &b, &c] {
        assert_eq!(m.breaker_open_until("gpt-4o"), None, "closed everywhere");
    }
}

#[tokio::test(start_paused = true)]
async fn a_fleet_rate_never_over_admits_and_admits_nearly_all_of_it() {
    let store = MemoryStore::new();
    let fleet = replicas(&store);
    settle().await;
    let rate = Rate::per_minute(600).burst(30);
    let start = Instant::now();
    let mut granted: Vec<Instant> = Vec::new();
    // Three times the rate for two minutes, round-robin over the replicas.
    let offered = 3 * 600 * 2;
    for i in 0..offered {
        if let Permit::Granted = fleet[i % 3].acquire("sk-key-1", rate).await {
            granted.push(Instant::now());
        }
        tokio::time::sleep_until(
            start + Duration::from_secs(120) * (i as u32 + 1) / offered as u32,
        )
        .await;
    }
    assert!(Instant::now() - start <= Duration::from_secs(121));
    // The GCRA bound: in any window W at most (W + τ) / T + 1 = limit + burst + 1.
    let window = Duration::from_secs(60);
    for (i, &t) in granted.iter().enumerate() {
        let in_window = granted[i..].iter().take_while(|&&u| u < t + window).count();
        assert!(
            in_window <= 600 + 30 + 1,
            "{in_window} in one minute from {:?}",
            t - start
        );
    }
    let last_minute = granted.iter().filter(|&&t| t >= start + window).count();
    assert!(
        last_minute >= 540,
        "admitted {last_minute} of 600 in a saturated minute"
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_said_once_each_way_and_the_fleet_converges() {
    let store = MemoryStore::new();
    let (notices_a, notices_b) = (Notices::default(), Notices::default());
    let a = FleetMirror::builder("test")
        .on_notice(notices_a.hook())
        .memory(&store)
        .unwrap();
    let b = FleetMirror::builder("test")
        .on_notice(notices_b.hook())
        .memory(&store)
        .unwrap();
    settle().await;
    assert!(a.is_available() && b.is_available());
    assert!(
        notices_a.lines().is_empty(),
        "nothing said while all is well"
    );

    store.set_available(false);
    let t0 = Instant::now();
    // Every call answers at once from local state.
    a.publish_hold("sk-key-1", t0 + Duration::from_secs(60));
    assert_eq!(a.held_until("sk-key-1"), Some(t0 + Duration::from_secs(60)));
    assert_eq!(
        a.acquire("k", Rate::per_minute(60)).await,
        Permit::Unavailable
    );
    assert_eq!(Instant::now(), t0, "no call waited");
    advance(Duration::from_secs(5)).await;
    settle().await;
    assert!(!a.is_available());
    assert_eq!(
        a.probe("gpt-4o", Duration::from_secs(1)).await,
        Probe::Unavailable
    );
    assert_eq!(
        b.held_until("sk-key-1"),
        None,
        "nothing travels while the store is away"
    );

    store.set_available(true);
    advance(Duration::from_millis(500)).await;
    settle().await;
    assert!(
        near(b.held_until("sk-key-1"), t0 + Duration::from_secs(60)),
        "converged"
    );
    let expect = [
        "fleet state unavailable: memory store unavailable",
        "fleet state restored",
    ];
    assert_eq!(notices_a.lines(), expect);
    assert_eq!(notices_b.lines(), expect);
}

#[tokio::test(start_paused = true)]
async fn namespaces_do_not_share() {
    let store = MemoryStore::new();
    let a = FleetMirror::builder("one").memory(&store).unwrap();
    let b = FleetMirror::builder("two").memory(&store).unwrap();
    settle().await;
    a.publish_hold("k", Instant::now() + Duration::from_secs(5));
    settle().await;
    assert_eq!(b.held_until("k"), None);
}

#[test]
fn building_needs_a_runtime_and_a_good_namespace() {
    let store = MemoryStore::new();
    let err = FleetMirror::builder("x").memory(&store).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let err = FleetMirror::builder("bad key{").memory(&store).unwrap_err();
        assert!(err.to_string().contains("namespace"));
    });
}
