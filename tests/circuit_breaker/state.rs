use crate::*;

#[tokio::test(start_paused = true)]
async fn every_service_and_clone_shares_the_state() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(2));
    let up = Upstream::default();
    let mut first = layer.layer(up.clone());
    let mut second = layer.layer(up.clone());
    let mut clone = first.clone();
    up.push_n(2, Plan::status(500));
    send(&mut first, None).await.unwrap();
    send(&mut clone, None).await.unwrap();
    assert_eq!(
        send(&mut second, None).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(second.handle().state(""), Some(CircuitState::Open));
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_handle_forces_resets_and_reports() {
    let layer = CircuitBreakerLayer::with_config(config()).key(ByExtension);
    let handle = layer.handle();
    let seen = transitions(&layer);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    send(&mut svc, Some("a")).await.unwrap();
    handle.force_open("b", Duration::from_secs(7));
    assert_eq!(
        send(&mut svc, Some("b")).await.unwrap_err().retry_after(),
        Some(Duration::from_secs(7))
    );
    let mut keys: Vec<_> = handle
        .snapshots()
        .iter()
        .map(|s| (s.key().to_owned(), s.state()))
        .collect();
    keys.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        keys,
        [
            ("a".into(), CircuitState::Closed),
            ("b".into(), CircuitState::Open)
        ]
    );

    handle.force_closed("b");
    assert_eq!(send(&mut svc, Some("b")).await.unwrap(), 200);
    handle.force_open("b", Duration::from_secs(7));
    assert!(handle.reset("b"));
    assert!(!handle.reset("b"));
    assert_eq!(handle.state("b"), None);
    assert_eq!(send(&mut svc, Some("b")).await.unwrap(), 200);
    // The service dropped the breaker it remembered: the call landed in the
    // key's new breaker.
    assert_eq!(handle.snapshot("b").unwrap().calls(), 1);
    send(&mut svc, Some("b")).await.unwrap();
    assert_eq!(handle.snapshot("b").unwrap().calls(), 2);
    handle.reset_all();
    assert!(handle.is_empty());

    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.key().to_owned(), t.to(), t.reason()))
        .collect();
    assert_eq!(
        seen,
        [
            ("b".into(), CircuitState::Open, TransitionReason::Forced),
            ("b".into(), CircuitState::Closed, TransitionReason::Forced),
            ("b".into(), CircuitState::Open, TransitionReason::Forced),
            ("b".into(), CircuitState::Closed, TransitionReason::Reset),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_registry_stays_bounded_with_100_000_keys() {
    fn by_tenant(parts: &http::request::Parts) -> Option<std::borrow::Cow<'_, str>> {
        parts
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(Into::into)
    }
    let layer = CircuitBreakerLayer::with_config(
        config()
            .max_keys(1000)
            .idle_timeout(Duration::from_secs(60)),
    )
    .key(by_tenant);
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let mut most = 0;
    for i in 0..100_000u32 {
        let req = Request::builder()
            .header("x-tenant", format!("tenant-{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = ServiceExt::<Req>::ready(&mut svc)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        if i % 1000 == 0 {
            most = most.max(handle.len());
        }
    }
    most = most.max(handle.len());
    assert!(most <= 1000, "{most} keys");
    assert!(
        handle.len() >= 500,
        "the registry should be used, not emptied: {}",
        handle.len()
    );
    assert_eq!(up.calls(), 100_000);
    // The newest key is still known; the oldest was forgotten.
    assert!(handle.state("tenant-99999").is_some());
    assert!(handle.state("tenant-0").is_none());
    // Idle keys go once the idle timeout has passed, except the one the
    // service still holds for its next call; it goes with the service.
    advance(Duration::from_secs(61)).await;
    let before = handle.len();
    assert_eq!(handle.evict_idle(), before - 1);
    assert!(handle.state("tenant-99999").is_some());
    drop(svc);
    assert_eq!(handle.evict_idle(), 1);
    assert!(handle.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_threads_count_exactly() {
    // A window much longer than the test, a threshold that is never reached.
    let layer = CircuitBreakerLayer::with_config(
        CircuitBreakerConfig::new()
            .window(Duration::from_secs(600), 10)
            .min_calls(u32::MAX)
            .consecutive_failures(None),
    );
    let handle = layer.handle();
    let failures_sent = Arc::new(AtomicUsize::new(0));
    let inner = tower::service_fn(|req: Request<()>| async move {
        let status = if req.headers().contains_key("x-fail") {
            503
        } else {
            200
        };
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    });
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let mut svc = svc.clone();
            let failures_sent = failures_sent.clone();
            tokio::spawn(async move {
                for i in 0..2_000u32 {
                    let mut req = Request::new(());
                    if (i + t) % 3 == 0 {
                        req.headers_mut().insert("x-fail", "1".parse().unwrap());
                        failures_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    let res = svc.ready().await.unwrap().call(req).await.unwrap();
                    let _ = res.into_body().collect().await.unwrap();
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!(snap.state(), CircuitState::Closed);
    assert_eq!(snap.calls(), 32_000);
    assert_eq!(
        snap.failures(),
        failures_sent.load(Ordering::Relaxed) as u64
    );
}

#[tokio::test(start_paused = true)]
async fn transitions_are_traced_without_the_key() {
    let logs = support::capture_logs();

    let layer = CircuitBreakerLayer::with_config(config().min_calls(1)).key(ByExtension);
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());
    up.push(Plan::status(500));
    send(&mut svc, Some("sk-live-0123456789abcdef"))
        .await
        .unwrap();
    advance(Duration::from_secs(10)).await;
    send(&mut svc, Some("sk-live-0123456789abcdef"))
        .await
        .unwrap();

    let text = logs.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("circuit breaker opened"),
        "{text}"
    );
    assert!(
        lines[0].contains("reason=failure ratio") && lines[0].contains("open_duration_ms=10000"),
        "{text}"
    );
    assert!(
        lines[1].contains("to=half-open") && lines[2].contains("to=closed"),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.contains("key=key#")), "{text}");
    assert!(!text.contains("sk-live"), "{text}");

    // Keys that are safe to show can be shown.
    let layer =
        CircuitBreakerLayer::with_config(config().min_calls(1).key_display(KeyDisplay::Plain))
            .key(ByExtension);
    let mut svc = layer.layer(up.clone());
    up.push(Plan::status(500));
    send(&mut svc, Some("gpt-4o")).await.unwrap();
    let text = logs.text();
    assert!(
        text.lines().last().unwrap().contains("key=gpt-4o"),
        "{text}"
    );
}
