use crate::*;

// ---------------------------------------------------------------------------
// What each target receives.

#[tokio::test(start_paused = true)]
async fn each_target_gets_its_base_credential_and_model() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    preset(ResilienceConfig::default().max_retries(0))
        .layer(two.clone())
        .oneshot(post())
        .await
        .unwrap();
    // `a`: the caller's request, at a's base.
    let got = two.a.last();
    assert_eq!(got.uri, "http://a.test/v1/chat/completions?trace=1");
    assert_eq!(got.header("authorization"), Some("Bearer sk-caller-0000"));
    assert_eq!(got.body, BODY);
    // `b`: its own key alone, its model, every other byte as sent.
    let got = two.b.last();
    assert_eq!(got.uri, "http://b.test/v1/chat/completions?trace=1");
    assert_eq!(got.header("authorization"), Some("Bearer sk-b-target"));
    assert_eq!(got.header("x-api-key"), None);
    let renamed = BODY.replacen("\"gpt-4o\"", "\"openai/gpt-4o\"", 1);
    assert_eq!(got.body, renamed);
    assert_eq!(
        got.header("content-length"),
        Some(&*renamed.len().to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_renaming_first_target_reads_the_body_whole_first() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let svc = FallbackLayer::new(Targets::from([b(), a()])).layer(two.clone());
    // A body in three chunks, the model split across them.
    let chunks = ["{\"mo", "del\":\"gpt-", "4o\",\"n\":1}"];
    let frames = chunks.map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(c))));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::post("http://gateway.test/v1/chat/completions")
        .body(body)
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(two.b.last().body, "{\"model\":\"openai/gpt-4o\",\"n\":1}");
}

// ---------------------------------------------------------------------------
// One loop.

#[tokio::test(start_paused = true)]
async fn a_fallback_layer_around_a_retry_layer_does_not_multiply_attempts() {
    let two = Two {
        a: Upstream::always(Plan::status(503)),
        b: Upstream::always(Plan::status(503)),
    };
    let fast = || {
        RetryLayer::new()
            .max_retries(2)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .jitter(Jitter::none())
    };
    let inner = fast().max_retries(5).layer(two.clone());
    let svc = FallbackLayer::new(Targets::from([a(), b()]))
        .retry(fast())
        .layer(inner);
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(Attempts::of(res.extensions()).get(), 6);
    assert_eq!((two.a.calls(), two.b.calls()), (3, 3));
}
