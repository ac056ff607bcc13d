use crate::*;

#[tokio::test(start_paused = true)]
async fn a_rate_of_3_per_minute_sends_at_most_3_in_any_minute_and_none_hangs() {
    let upstream = Upstream::new(|_, _| (Duration::ZERO, ok()));
    let svc = PacingLayer::with_config(PacingConfig::new().rpm(3)).layer(upstream.clone());
    let calls = spawn_calls(&svc, "a", 6);
    let mut succeeded = 0;
    let mut refusals = Vec::new();
    for c in calls {
        let (result, done_at) = c.await.unwrap();
        assert!(done_at <= 60 * SEC, "no call waits past max_retry_after");
        match refused(&result) {
            Some((wait, cause)) => {
                assert_eq!(cause, HoldCause::Rate);
                assert_eq!(done_at, Duration::ZERO, "refused at once");
                assert!(wait > 60 * SEC);
                refusals.push(wait);
            }
            None => succeeded += 1,
        }
    }
    let sent: Vec<Duration> = upstream.sent().iter().map(|s| s.at).collect();
    assert_eq!(sent.len(), succeeded);
    assert!(sent.iter().filter(|&&t| t < 10 * SEC).count() <= 3);
    for &t in &sent {
        assert!(
            sent.iter().filter(|&&u| u >= t && u < t + 60 * SEC).count() <= 3,
            "{sent:?}"
        );
    }
    assert_eq!(succeeded + refusals.len(), 6);
    assert!(!refusals.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_does_not_fit_is_refused_at_once_and_not_sent() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "10")], RATE_LIMITED)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::with_config(PacingConfig::new().max_retry_after(5 * SEC));
    let events = Arc::new(Mutex::new(Vec::new()));
    layer.handle().on_event({
        let events = events.clone();
        move |e| {
            events
                .lock()
                .unwrap()
                .push((e.action(), e.cause(), e.wait()))
        }
    });
    let svc = layer.layer(upstream.clone());
    assert_eq!(call(&svc, request("a")).await.unwrap(), 429);
    tokio::time::sleep(SEC).await;

    // Beyond max_retry_after.
    let start = Instant::now();
    let result = call(&svc, request("a")).await;
    assert_eq!(refused(&result), Some((9 * SEC, HoldCause::Upstream)));
    assert_eq!(start.elapsed(), Duration::ZERO);
    let rendered = result.unwrap_err().to_response::<Bytes>();
    assert_eq!(rendered.status(), 429);
    assert_eq!(rendered.headers()["retry-after"], "9");

    // Within max_retry_after, but past the call's deadline.
    tokio::time::sleep(5 * SEC).await;
    let mut req = request("a");
    Deadline::after(SEC).set_earliest(req.extensions_mut());
    assert_eq!(
        refused(&call(&svc, req).await),
        Some((4 * SEC, HoldCause::Upstream))
    );

    // Within both, but the request says not to wait.
    let mut req = request("a");
    req.extensions_mut().insert(RefuseIfHeld);
    assert_eq!(
        refused(&call(&svc, req).await),
        Some((4 * SEC, HoldCause::Upstream))
    );
    assert_eq!(start.elapsed(), 5 * SEC);
    assert_eq!(upstream.sent().len(), 1, "nothing sent");

    // A call that can wait does.
    assert_eq!(call(&svc, request("a")).await.unwrap(), 200);
    assert!(start.elapsed() >= 9 * SEC);
    let events = events.lock().unwrap();
    let actions: Vec<PacingAction> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        actions,
        [
            PacingAction::Learnt,
            PacingAction::Refused,
            PacingAction::Refused,
            PacingAction::Refused,
            PacingAction::Waited
        ]
    );
    assert_eq!(events[0].2, 10 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_distinct_keys_stays_within_the_bound() {
    let upstream = Upstream::new(|_, _| (Duration::ZERO, ok()));
    let layer = PacingLayer::with_config(PacingConfig::new().max_keys(64));
    let handle = layer.handle();
    let mut svc = layer.layer(upstream);
    for i in 0..5_000 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(request(&format!("sk-{i}")))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(handle.len() <= 64);
    }
    assert!(handle.len() <= handle.capacity() && handle.capacity() <= 64);
}

#[tokio::test(start_paused = true)]
async fn a_held_key_survives_a_flood_of_new_keys() {
    let upstream = Upstream::new(|n, _| {
        let res = if n == 0 {
            response(429, &[("retry-after", "30")], RATE_LIMITED)
        } else {
            ok()
        };
        (Duration::ZERO, res)
    });
    let layer = PacingLayer::with_config(PacingConfig::new().max_keys(64));
    let svc = layer.layer(upstream);
    assert_eq!(call(&svc, request("held")).await.unwrap(), 429);
    for i in 0..1_000 {
        call(&svc, request(&format!("sk-{i}"))).await.unwrap();
    }
    assert_eq!(
        layer.handle().holds().len(),
        1,
        "idle keys are forgotten first"
    );
}
