use crate::*;

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
