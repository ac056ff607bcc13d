use crate::*;

// ---------------------------------------------------------------------------
// Retried, then moved on.

#[tokio::test(start_paused = true)]
async fn five_hundreds_are_retried_on_the_first_target_then_the_second_serves() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let svc = preset(ResilienceConfig::default()).layer(two.clone());
    let start = Instant::now();
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 4));
    assert_eq!((two.a.calls(), two.b.calls()), (3, 1));
    // Two backoffs on `a`, none before `b`.
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(two.a.times(), [Duration::ZERO, ms(100), ms(200)]);
    assert_eq!(two.b.times(), [ms(200)]);
}

#[tokio::test(start_paused = true)]
async fn the_first_breaker_counts_one_failure_and_the_second_one_success() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let layer = preset(ResilienceConfig::default());
    let breakers: CircuitBreakerHandle = layer.breaker_handle();
    let res = layer.layer(two).oneshot(post()).await.unwrap();
    assert_eq!(text(res).await, "{}");
    let a = breakers.snapshot("a:gpt-4o").unwrap();
    let b = breakers.snapshot("b:openai/gpt-4o").unwrap();
    assert_eq!(
        (a.calls(), a.failures()),
        (1, 1),
        "three attempts, one call"
    );
    assert_eq!((b.calls(), b.failures()), (1, 0));
}

// ---------------------------------------------------------------------------
// Cannot serve: the next target at once.

#[tokio::test(start_paused = true)]
async fn an_open_breaker_moves_on_at_once_without_calling_the_first() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let layer = preset(ResilienceConfig::default());
    layer
        .breaker_handle()
        .force_open("a:gpt-4o", Duration::from_secs(30));
    let start = Instant::now();
    let res = layer.layer(two.clone()).oneshot(post()).await.unwrap();
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 1));
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_target_that_cannot_serve_gets_exactly_one_attempt() {
    let quota = r#"{"error":{"message":"no quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    let context = r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    let cases = [
        ("401", Plan::json(401, r#"{"error":{"message":"bad key"}}"#)),
        ("402", Plan::json(402, r#"{"error":{"message":"pay"}}"#)),
        ("403", Plan::json(403, r#"{"error":{"message":"no"}}"#)),
        (
            "404",
            Plan::json(404, r#"{"error":{"code":"model_not_found"}}"#),
        ),
        ("quota", Plan::json(429, quota)),
        (
            "long hint",
            Plan::json(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "120"),
        ),
        ("context length", Plan::json(400, context)),
    ];
    for (case, plan) in cases {
        let two = Two {
            a: Upstream::always(plan),
            b: Upstream::always(Plan::json(200, "{}")),
        };
        // No budget at all: moving on spends none.
        let layer = preset(ResilienceConfig::default())
            .map_retry(|r| r.budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0)));
        let start = Instant::now();
        let res = layer.layer(two.clone()).oneshot(post()).await.unwrap();
        assert_eq!(res.status(), 200, "{case}");
        assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 2), "{case}");
        assert_eq!((two.a.calls(), two.b.calls()), (1, 1), "{case}");
        assert_eq!(start.elapsed(), Duration::ZERO, "{case}: no backoff");
    }
}

#[tokio::test(start_paused = true)]
async fn a_prompt_over_a_window_skips_that_target() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let targets = Targets::from([a().context_window(8_000), b().context_window(128_000)]);
    let layer = preset(ResilienceConfig::default()).targets(targets);
    let svc = layer.layer(two.clone());
    let mut req = post();
    req.extensions_mut().insert(PromptTokens::new(9_000, 500));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 1));
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));

    // Over every window: 400 at once, nothing sent.
    let mut req = post();
    req.extensions_mut().insert(PromptTokens::new(200_000, 0));
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (400, "context_length_exceeded")
    );
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn pacing_held_on_the_first_target_sends_to_the_second_without_touching_the_first() {
    let two = Two {
        // A rate limit for two minutes, beyond max_retry_after (60 s).
        a: Upstream::always(
            Plan::json(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "120"),
        ),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let layer = preset(ResilienceConfig::default());
    let svc = layer.layer(two.clone());
    let res = svc.clone().oneshot(post()).await.unwrap();
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 2));
    assert_eq!(layer.pacing_handle().holds().len(), 1, "a is held");

    // The next calls go to `b` at once: `a` is not sent anything.
    tokio::time::advance(Duration::from_secs(30)).await;
    let start = Instant::now();
    for _ in 0..3 {
        let res = svc.clone().oneshot(post()).await.unwrap();
        assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 1));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((two.a.calls(), two.b.calls()), (1, 4));
}
