use crate::*;

#[tokio::test(start_paused = true)]
async fn opens_exactly_when_the_ratio_reaches_the_threshold_after_min_calls() {
    let layer = CircuitBreakerLayer::with_config(config());
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    // Nine failures: a ratio of 1.0, but fewer than the minimum calls.
    up.push_n(9, Plan::status(500));
    for _ in 0..9 {
        assert_eq!(send(&mut svc, None).await.unwrap(), 500);
    }
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    // The tenth call, a success, completes the minimum: 9/10 >= 0.5.
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(up.calls(), 10);

    // Just under the threshold, then exactly at it.
    handle.force_closed("");
    up.push_n(4, Plan::status(503));
    up.push_n(6, Plan::status(200));
    for _ in 0..10 {
        send(&mut svc, None).await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 10, 4)
    );
    up.push(Plan::status(502)); // 5/11 < 0.5
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    up.push(Plan::status(504)); // 6/12 == 0.5
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(up.calls(), 22);

    // 4xx and 429 are not failures.
    handle.force_closed("");
    for s in [400, 401, 404, 429, 429, 400, 403, 422, 429, 404, 408, 501] {
        up.push(Plan::status(s));
        send(&mut svc, None).await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 12, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_no_longer_count() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(4));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push_n(3, Plan::status(500));
    for _ in 0..3 {
        send(&mut svc, None).await.unwrap();
    }
    assert_eq!(handle.snapshot("").unwrap().failures(), 3);
    // Still inside the window after 9 s: one more failure would open it.
    advance(Duration::from_secs(9)).await;
    assert_eq!(handle.snapshot("").unwrap().failures(), 3);
    // After the whole window, they are gone.
    advance(Duration::from_secs(1)).await;
    let snap = handle.snapshot("").unwrap();
    assert_eq!((snap.calls(), snap.failures()), (0, 0));

    up.push(Plan::status(500));
    for _ in 0..4 {
        send(&mut svc, None).await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 4, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_it() {
    let layer =
        CircuitBreakerLayer::with_config(config().min_calls(1000).consecutive_failures(Some(3)));
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    for s in [500, 502, 200, 503, 504] {
        up.push(Plan::status(s));
        send(&mut svc, None).await.unwrap();
    }
    assert_eq!(handle.snapshot("").unwrap().consecutive_failures(), 2);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    up.push(Plan::error(io::ErrorKind::ConnectionRefused));
    let err = send(&mut svc, None).await.unwrap_err();
    assert_eq!(err.code(), "connection_error");
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].reason(), TransitionReason::ConsecutiveFailures);
    assert_eq!(seen[0].open_duration(), Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_it() {
    let layer = CircuitBreakerLayer::with_config(
        config()
            .window(Duration::from_secs(60), 10)
            .min_calls(4)
            .slow_calls(Duration::from_secs(2), 0.5),
    );
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());
    let slow = |s| Plan::status(s).after(Duration::from_secs(3));

    // One slow call out of four: under the ratio.
    up.push(slow(200));
    up.push_n(3, Plan::status(200));
    let start = Instant::now();
    for _ in 0..4 {
        assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    }
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.slow_calls(), snap.failures()),
        (CircuitState::Closed, 1, 0)
    );

    // A call just at the threshold is not slow; one more slow call makes 2/6.
    up.push(Plan::status(200).after(Duration::from_secs(2)));
    up.push(slow(200));
    send(&mut svc, None).await.unwrap();
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.snapshot("").unwrap().slow_calls(), 2);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    // A third slow call: 3/7 < 0.5; a fourth: 4/8 opens it, although every
    // call succeeded.
    up.push(slow(200));
    up.push(slow(200));
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(
        seen.lock().unwrap()[0].reason(),
        TransitionReason::SlowCallRatio
    );
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_waiting_for_the_inner_service() {
    let layer = CircuitBreakerLayer::with_config(config());
    let handle = layer.handle();
    let inner = Stuck {
        polled: Arc::default(),
        called: Arc::default(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let mut svc = layer.layer(inner.clone());
    handle.force_open("", Duration::from_secs(30));
    advance(Duration::from_millis(500)).await;

    // Ready at once, although the inner service is not.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(inner.called.load(Ordering::SeqCst), 0);
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(err.code(), "circuit_open");
    assert!(!err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_millis(29_500)));
    let res = err.to_response::<Bytes>();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    assert!(std::str::from_utf8(res.body())
        .unwrap()
        .contains("\"code\":\"circuit_open\""));

    // Once closed, an admitted call waits for the inner service in its future.
    handle.force_closed("");
    let svc = svc.ready().await.unwrap();
    let mut fut = std::pin::pin!(svc.call(Request::new(())));
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(inner.called.load(Ordering::SeqCst), 0);
    inner.ready.store(true, Ordering::SeqCst);
    let res = fut.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(inner.called.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_n_probes_and_successes_close_it() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(2).half_open_probes(2, 2));
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push_n(2, Plan::status(503));
    send(&mut svc, None).await.unwrap();
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    let err = send(&mut svc, None).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(up.calls(), 2);

    advance(Duration::from_secs(10)).await;
    // Two probes go through and stay in flight…
    let (tx1, plan1) = Plan::deferred();
    let (tx2, plan2) = Plan::deferred();
    up.push(plan1);
    up.push(plan2);
    let p1 = tokio::spawn({
        let mut svc = svc.clone();
        async move { send(&mut svc, None).await }
    });
    let p2 = tokio::spawn({
        let mut svc = svc.clone();
        async move { send(&mut svc, None).await }
    });
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(up.calls(), 4);
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.probes_in_flight()),
        (CircuitState::HalfOpen, 2)
    );
    // …and a third call is turned away.
    for _ in 0..3 {
        let err = send(&mut svc, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
    assert_eq!(up.calls(), 4);

    // One success is not enough; the second closes it.
    tx1.send(Plan::status(200)).unwrap();
    assert_eq!(p1.await.unwrap().unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::HalfOpen));
    tx2.send(Plan::status(200)).unwrap();
    assert_eq!(p2.await.unwrap().unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);

    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from(), t.to(), t.reason()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                CircuitState::Closed,
                CircuitState::Open,
                TransitionReason::FailureRatio
            ),
            (
                CircuitState::Open,
                CircuitState::HalfOpen,
                TransitionReason::OpenElapsed
            ),
            (
                CircuitState::HalfOpen,
                CircuitState::Closed,
                TransitionReason::ProbesSucceeded
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_it_for_longer() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push(Plan::status(500));
    send(&mut svc, None).await.unwrap();
    let open = |h: &tower_http_resilience::circuit_breaker::CircuitBreakerHandle| {
        h.snapshot("").unwrap().open_remaining()
    };
    assert_eq!(open(&handle), Some(Duration::from_secs(10)));

    // Each failed probe doubles the open time, up to the 60 s cap.
    for expected in [20, 40, 60, 60] {
        advance(open(&handle).unwrap()).await;
        up.push(Plan::error(io::ErrorKind::TimedOut));
        let err = send(&mut svc, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(open(&handle), Some(Duration::from_secs(expected)));
        assert_eq!(
            send(&mut svc, None).await.unwrap_err().retry_after(),
            Some(Duration::from_secs(expected))
        );
    }
    let calls = up.calls();
    assert_eq!(calls, 5);

    // A successful probe closes it and the next trip starts again at 10 s.
    advance(Duration::from_secs(60)).await;
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
    assert_eq!(handle.snapshot("").unwrap().trips(), 0);
    up.push(Plan::status(500));
    send(&mut svc, None).await.unwrap();
    assert_eq!(open(&handle), Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn one_model_open_another_untouched() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(3)).key(ByExtension);
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push_n(3, Plan::status(503));
    for _ in 0..3 {
        send(&mut svc, Some("flaky-model")).await.unwrap();
    }
    assert_eq!(handle.state("flaky-model"), Some(CircuitState::Open));
    for _ in 0..5 {
        assert_eq!(send(&mut svc, Some("good-model")).await.unwrap(), 200);
        let err = send(&mut svc, Some("flaky-model")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    }
    assert_eq!(up.calls(), 8);
    let good = handle.snapshot("good-model").unwrap();
    assert_eq!(
        (good.state(), good.calls(), good.failures()),
        (CircuitState::Closed, 5, 0)
    );
    // A request without a key is not guarded.
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn keys_chain_with_or_closures_included() {
    let by_tenant = key_fn(|parts: &http::request::Parts| {
        let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
        Some(std::borrow::Cow::Borrowed(tenant))
    });
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1))
        .key(ByExtension.or(by_tenant).or(GlobalKey));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let call = |model: Option<&'static str>, tenant: Option<&'static str>| {
        let mut req = request();
        if let Some(m) = model {
            req.extensions_mut().insert(BreakerKey::new(m));
        }
        if let Some(t) = tenant {
            req.headers_mut().insert("x-tenant", t.parse().unwrap());
        }
        req
    };
    // The tenant's upstream fails: only the tenant's breaker opens.
    up.push(Plan::status(503));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(None, Some("acme")))
        .await;
    assert_eq!(res.unwrap().status(), 503);
    assert_eq!(handle.state("acme"), Some(CircuitState::Open));
    let err = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(None, Some("acme")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    // The model wins over the tenant; without either, the global key.
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(Some("gpt-4o"), Some("acme")))
        .await;
    assert_eq!(res.unwrap().status(), 200);
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(None, None))
        .await;
    assert_eq!(res.unwrap().status(), 200);
    let mut keys: Vec<_> = handle
        .snapshots()
        .iter()
        .map(|s| s.key().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["", "acme", "gpt-4o"]);
    assert_eq!(up.calls(), 3);
}
