use crate::*;

#[tokio::test(start_paused = true)]
async fn a_success_with_nothing_left_holds_the_next_calls_until_the_reset() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(
                200,
                &[
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "2s"),
                ],
                "{}",
            )
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::new();
    let svc = layer.layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);

    let calls = spawn_calls(&svc, "a", 4);
    for c in calls {
        let (result, _) = c.await.unwrap();
        assert_eq!(result.unwrap(), 200, "every held call succeeds");
    }
    let sent = upstream.sent();
    assert_eq!(sent.len(), 5);
    let mut later: Vec<Duration> = sent[1..].iter().map(|s| s.at).collect();
    assert!(
        later.iter().all(|&t| t >= 2 * SEC),
        "none before the reset: {later:?}"
    );
    // Released spread over the window after the reset, not all at once.
    later.sort();
    later.dedup();
    assert_eq!(later.len(), 4, "four distinct release instants");
    assert!(later
        .iter()
        .all(|&t| t < 2 * SEC + Duration::from_millis(250)));
    // Another credential is not held.
    let before = Instant::now();
    assert_eq!(call(&svc, request("b")).await.unwrap(), 200);
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_a_hint_holds_the_key_for_the_hint() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "2")], RATE_LIMITED)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let svc = PacingLayer::new().layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 429);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = spawn_calls(&svc, "a", 3);
    for c in calls {
        assert_eq!(c.await.unwrap().0.unwrap(), 200);
    }
    let sent = upstream.sent();
    assert_eq!(sent.len(), 4);
    assert!(sent[1..].iter().all(|s| s.at >= 2 * SEC), "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn a_later_shorter_hint_never_shortens_a_hold() {
    // Two calls in flight together: the first is told 10 s, the second,
    // answered later, 1 s.
    let upstream = Upstream::new(|n, _| match n {
        0 => (
            Duration::from_millis(100),
            response(429, &[("retry-after", "10")], RATE_LIMITED),
        ),
        1 => (
            Duration::from_millis(200),
            response(429, &[("retry-after", "1")], RATE_LIMITED),
        ),
        _ => (Duration::ZERO, ok()),
    });
    let layer = PacingLayer::new();
    let handle = layer.handle();
    let svc = layer.layer(upstream.clone());
    let first = spawn_calls(&svc, "a", 2);
    for c in first {
        assert_eq!(c.await.unwrap().0.unwrap(), 429);
    }
    let holds = handle.holds();
    assert_eq!(holds.len(), 1);
    assert_eq!(upstream.sent()[1].at, Duration::ZERO, "both in flight");
    assert_eq!(holds[0].remaining(), Duration::from_millis(9_900));
    assert!(
        !holds[0].key().contains("Bearer"),
        "no credential in a key name"
    );

    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);
    assert!(upstream.sent()[2].at >= Duration::from_millis(10_100));
}

#[tokio::test(start_paused = true)]
async fn a_quota_429_holds_nothing() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "20")], QUOTA)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::new();
    let svc = layer.layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 429);
    assert!(layer.handle().holds().is_empty());
    let before = Instant::now();
    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_body_dropped_unread_still_holds() {
    let upstream = Upstream::new(|_, _| {
        (
            Duration::ZERO,
            response(429, &[("retry-after", "3")], RATE_LIMITED),
        )
    });
    let layer = PacingLayer::new();
    let svc = layer.layer(upstream);
    let res = svc.clone().oneshot(request("a")).await.unwrap();
    assert!(
        layer.handle().holds().is_empty(),
        "not before the body is seen"
    );
    drop(res);
    assert_eq!(layer.handle().holds()[0].remaining(), 3 * SEC);
}
