use crate::*;

#[tokio::test(start_paused = true)]
async fn waits_equal_retry_after_seconds() {
    assert_eq!(
        waits_for(&[("retry-after", "2")]).await,
        [2000 * MS, 2000 * MS]
    );
    assert_eq!(
        waits_for(&[("retry-after", "0.25")]).await,
        [250 * MS, 250 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn waits_equal_retry_after_ms() {
    assert_eq!(
        waits_for(&[("retry-after-ms", "1500"), ("retry-after", "9")]).await,
        [1500 * MS, 1500 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn waits_until_an_http_date() {
    // HTTP-dates have whole seconds and are read against the wall clock:
    // a date 4 s ahead is a wait in (3 s, 4 s].
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(4));
    let waits = waits_for(&[("retry-after", &date)]).await;
    for w in waits {
        assert!(
            w > Duration::from_secs(2) && w <= Duration::from_secs(4),
            "{w:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_exhausted_rate_limit_to_reset() {
    let headers = [
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-remaining-requests", "12"),
        ("x-ratelimit-reset-tokens", "750ms"),
        ("x-ratelimit-remaining-tokens", "0"),
    ];
    assert_eq!(waits_for(&headers).await, [750 * MS, 750 * MS]);
    assert_eq!(
        waits_for(&[("x-ratelimit-reset-requests", "6.5s")]).await,
        [6500 * MS, 6500 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hint_above_the_cap_returns_at_once_with_the_hint() {
    let upstream = Upstream::always(respond(
        429,
        &[("retry-after", "120")],
        r#"{"error":{"message":"slow down"}}"#,
    ));
    let client = layer().layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
    assert_eq!(upstream.calls(), 1);
    assert_eq!(attempts(&res), 1);
    assert_eq!(
        res.headers()["retry-after"],
        "120",
        "the hint reaches the caller"
    );
    assert_eq!(text(res).await, r#"{"error":{"message":"slow down"}}"#);

    // The same for an error that carries a hint, and a configured cap.
    let upstream = Upstream::always(Plan::fail(|| {
        ApiError::new(ErrorKind::Unavailable)
            .with_retry_after(Duration::from_secs(11))
            .into()
    }));
    let client = layer()
        .max_retry_after(Duration::from_secs(10))
        .layer(upstream.clone());
    let err = client.oneshot(post("{}")).await.unwrap_err();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(11)));
    assert_eq!(err_attempts(&err), 1);
}

#[tokio::test(start_paused = true)]
async fn no_wait_crosses_the_layer_deadline() {
    let upstream = Upstream::always(status(503));
    let client = layer()
        .max_retries(10)
        .backoff(Backoff::constant(Duration::from_secs(2)))
        .deadline(Duration::from_secs(5))
        .layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(upstream.times(), [Duration::ZERO, 2000 * MS, 4000 * MS]);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(4),
        "returned when the next wait would cross 5 s"
    );
    assert_eq!(attempts(&res), 3);
    assert!(
        upstream
            .received()
            .iter()
            .all(|s| Deadline::get(&s.extensions).is_some()),
        "inner layers see the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn no_wait_crosses_a_deadline_set_by_an_outer_layer() {
    let upstream = Upstream::always(respond(503, &[("retry-after", "2")], ""));
    let client = layer()
        .max_retries(10)
        .deadline(Duration::from_secs(60))
        .layer(upstream.clone());
    let mut req = post("{}");
    Deadline::after(Duration::from_secs(3)).set_earliest(req.extensions_mut());
    let start = Instant::now();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(upstream.times(), [Duration::ZERO, 2000 * MS]);
    assert_eq!(start.elapsed(), 2000 * MS);
    assert_eq!(attempts(&res), 2);

    // A hint that would cross it: the error comes back at once.
    let upstream = Upstream::always(respond(503, &[("retry-after", "30")], ""));
    let client = layer()
        .deadline(Duration::from_secs(10))
        .layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(
        (start.elapsed(), upstream.calls(), attempts(&res)),
        (Duration::ZERO, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_uses_up_the_deadline() {
    // Attempts that take 3 s each (the upstream waits before answering).
    #[derive(Clone)]
    struct Slow(Upstream);
    impl<B> Service<Request<ReplayBody<B>>> for Slow
    where
        ReplayBody<B>: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        type Response = Response<UpBody>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Response<UpBody>, BoxError>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<ReplayBody<B>>) -> Self::Future {
            let f = self.0.call(req);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                f.await
            })
        }
    }
    let upstream = Upstream::always(status(502));
    let client = layer()
        .max_retries(10)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .deadline(Duration::from_secs(10))
        .layer(Slow(upstream.clone()));
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    // 0–3 s attempt, wait to 4, 4–7 attempt, wait to 8, 8–11 attempt: the
    // attempt itself may run past the deadline (an outer total timeout cuts
    // it), but no wait starts that would end past it.
    assert_eq!(upstream.calls(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(11));
    assert_eq!(res.status(), 502);
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_retries_against_a_dead_upstream() {
    let upstream = Upstream::always(status(503));
    let floor_per_sec = 1;
    let ratio = 0.2;
    let layer = layer()
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(RetryBudget::new(
            Duration::from_secs(10),
            floor_per_sec,
            ratio,
        ));
    // Two services of the one layer, used through clones: one budget.
    let a = layer.layer(upstream.clone());
    let b = layer.layer(upstream.clone());
    let requests = 50;
    for i in 0..requests {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        let res = svc.oneshot(post("{}")).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let bound = requests as f64 * (1.0 + f64::from(ratio)) + f64::from(floor_per_sec) * 10.0;
    let total = upstream.calls();
    assert!(total as f64 <= bound, "{total} attempts > {bound}");
    assert_eq!(
        total, 70,
        "the whole budget is used: 50 + 10 floor + 20% of 50"
    );
    assert!(Arc::ptr_eq(a.budget(), b.budget()), "one budget");
    assert_eq!(a.budget().available(), 0);

    // Ten seconds later the window has moved on.
    tokio::time::advance(Duration::from_secs(11)).await;
    let res = a.clone().oneshot(post("{}")).await.unwrap();
    assert_eq!(attempts(&res), 4);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_spends_no_budget_and_is_not_retried() {
    let upstream = Upstream::always(Plan::fail(|| {
        ApiError::circuit_open(Duration::from_secs(5)).into()
    }));
    let layer = layer().budget(RetryBudget::new(Duration::from_secs(1), 1, 0.0));
    let client = layer.layer(upstream.clone());
    let err = client.clone().oneshot(post("{}")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(5)),
        "the breaker's retry-after is kept"
    );
    assert_eq!(err_attempts(&err), 1);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(client.budget().available(), 1, "nothing withdrawn");

    // Even a policy that wants everything retried cannot retry it.
    let upstream = Upstream::always(Plan::fail(|| {
        ApiError::circuit_open(Duration::from_secs(5)).into()
    }));
    let client = layer
        .clone()
        .policy(|_: &Outcome<'_>| Decision::Retry)
        .layer(upstream.clone());
    let err = client.oneshot(post("{}")).await.unwrap_err();
    assert_eq!((err.kind(), upstream.calls()), (ErrorKind::CircuitOpen, 1));

    // A 503, then the breaker opens: the rejection is the last outcome; a
    // rejection was not sent, so it is not an attempt.
    let upstream = Upstream::script([
        status(503),
        Plan::fail(|| ApiError::circuit_open(Duration::from_secs(5)).into()),
    ]);
    let client = layer.layer(upstream.clone());
    let err = client.oneshot(post("{}")).await.unwrap_err();
    assert_eq!(
        (err.code(), err_attempts(&err), upstream.calls()),
        ("circuit_open", 1, 2)
    );
    assert!(!err.is_retryable(), "retried: x-should-retry: false");
}

#[tokio::test(start_paused = true)]
async fn jitter_and_backoff_shape_the_waits() {
    let upstream = Upstream::always(status(500));
    let client = RetryLayer::new()
        .max_retries(5)
        .budget(RetryBudget::unlimited())
        .backoff(Backoff::exponential(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ))
        .jitter(Jitter::none())
        .layer(upstream.clone());
    client.oneshot(post("{}")).await.unwrap();
    let t = upstream.times();
    let waits: Vec<_> = t.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16], "min(2^n, 60) s");

    // The default: 500 ms doubling, each up to 25% shorter.
    let upstream = Upstream::always(status(500));
    let client = RetryLayer::new()
        .budget(RetryBudget::unlimited())
        .layer(upstream.clone());
    client.oneshot(post("{}")).await.unwrap();
    let t = upstream.times();
    for (n, w) in t.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let full = Duration::from_millis(500) * 2u32.pow(n as u32);
        assert!(
            w <= full && w >= full * 3 / 4,
            "wait {n}: {w:?} vs {full:?}"
        );
    }
}
