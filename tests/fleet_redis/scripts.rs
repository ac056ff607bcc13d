use crate::*;

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
