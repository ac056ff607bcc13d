use crate::*;

// ---------------------------------------------------------------------------
// Back to the caller.

#[tokio::test(start_paused = true)]
async fn an_invalid_request_goes_back_and_the_second_target_is_never_called() {
    for (status, body) in [
        (
            400,
            r#"{"error":{"message":"temperature must be <= 2","param":"temperature"}}"#,
        ),
        (
            422,
            r#"{"detail":[{"loc":["body","messages"],"msg":"field required"}]}"#,
        ),
    ] {
        let two = Two {
            a: Upstream::always(Plan::json(status, body)),
            b: Upstream::new(),
        };
        let err = preset(ResilienceConfig::default())
            .layer(two.clone())
            .oneshot(post())
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), status);
        assert_eq!(failed(&err), ("a:gpt-4o".into(), 1));
        assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_path_that_would_leave_the_base_is_refused_before_any_call() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::new(),
    };
    let mut req = post();
    *req.uri_mut() = "http://gateway.test/v1/%2e%2e/admin".parse().unwrap();
    let err = preset(ResilienceConfig::default())
        .layer(two.clone())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
    assert_eq!((two.a.calls(), two.b.calls()), (0, 0));
}

// ---------------------------------------------------------------------------
// Every target failed.

#[tokio::test(start_paused = true)]
async fn all_targets_down_is_one_envelope_that_says_do_not_retry() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(502, DOWN)),
    };
    let svc = preset(ResilienceConfig::default())
        .server()
        .layer(two.clone());
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 502, "the later of two generic failures");
    assert_eq!(res.headers()["x-should-retry"], "false");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 6));
    assert_eq!((two.a.calls(), two.b.calls()), (3, 3));
    let body: serde_json::Value = serde_json::from_slice(&text(res).await).unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(start_paused = true)]
async fn the_most_telling_failure_is_the_rate_limit_with_the_longest_wait() {
    let two = Two {
        a: Upstream::always(
            Plan::json(429, r#"{"error":{"message":"slow"}}"#).header("retry-after", "90"),
        ),
        b: Upstream::always(Plan::json(503, DOWN)),
    };
    let err = preset(ResilienceConfig::default())
        .layer(two.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (429, "rate_limit_exceeded")
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(90)));
    assert!(!err.is_retryable());
    // The failure is `a`'s; the call ended on `b`, tried last.
    assert_eq!(failed(&err), ("b:openai/gpt-4o".into(), 4));
}

#[tokio::test(start_paused = true)]
async fn open_breakers_everywhere_answer_with_the_shortest_time_left() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::new(),
    };
    let layer = preset(ResilienceConfig::default());
    let breakers = layer.breaker_handle();
    breakers.force_open("a:gpt-4o", Duration::from_secs(40));
    breakers.force_open("b:openai/gpt-4o", Duration::from_secs(10));
    let err = layer.layer(two.clone()).oneshot(post()).await.unwrap_err();
    assert_eq!(err.code(), "circuit_open");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(Served::of(err.extensions()).unwrap().index(), 1);
    assert_eq!((two.a.calls(), two.b.calls()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_covers_the_chain() {
    // Every attempt hangs until its attempt timeout (4 s); the total is 10 s.
    let two = Two {
        a: Upstream::always(Plan::hang()),
        b: Upstream::always(Plan::hang()),
    };
    let config = ResilienceConfig::default()
        .total_timeout(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(4));
    let start = Instant::now();
    let err = preset(config)
        .targets(Targets::from([a().retries(1), b()]))
        .layer(two.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    // a: at 0 s and, after a backoff, at 4.1 s; b at once at 8.1 s, cut by
    // the deadline.
    assert_eq!(two.a.times(), [Duration::ZERO, ms(4100)]);
    assert_eq!(two.b.times(), [ms(8100)]);
}

#[tokio::test(start_paused = true)]
async fn no_target_is_started_past_the_deadline() {
    // The loop's own deadline (no outer timeout cuts the attempt): `a`
    // answers after it, so `b` is never tried.
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN).after(Duration::from_secs(11))),
        b: Upstream::new(),
    };
    let layer = FallbackLayer::new(Targets::from([a(), b()])).retry(
        RetryLayer::new()
            .max_retries(0)
            .deadline(Duration::from_secs(10)),
    );
    let res = layer.layer(two.clone()).oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
}
