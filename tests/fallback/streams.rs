use crate::*;

// ---------------------------------------------------------------------------
// Streams commit at their first event.

const B_STREAM: [&str; 3] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    ": keep-alive\n\n",
    "data: [DONE]\n\n",
];

fn b_stream() -> Upstream {
    Upstream::always(Plan::sse(&B_STREAM))
}

/// `first` from `a` fails the call's attempt there after `failed_after`;
/// `b` answers a second later, past the first-byte clock of the call's
/// start: each attempt has its own.
async fn served_by_b(first: Plan, failed_after: Duration) {
    let two = Two {
        a: Upstream::always(first),
        b: Upstream::always(Plan::sse(&B_STREAM).after(Duration::from_secs(1))),
    };
    let config = ResilienceConfig::default().stream_first_byte_timeout(Duration::from_secs(5));
    let layer = preset(config).targets(Targets::from([a().retries(0), b()]));
    let breakers = layer.breaker_handle();
    let start = Instant::now();
    let res = layer.layer(two.clone()).oneshot(streaming()).await.unwrap();
    assert_eq!(start.elapsed(), failed_after + Duration::from_secs(1));
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 2));
    assert_eq!(text(res).await, B_STREAM.concat(), "byte for byte");
    assert_eq!((two.a.calls(), two.b.calls()), (1, 1));
    let a = breakers.snapshot("a:gpt-4o").unwrap();
    assert_eq!((a.calls(), a.failures()), (1, 1), "the stream failed");
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_no_first_event_within_the_first_byte_clock_is_served_by_the_second() {
    let silent = Plan::sse(&[": thinking\n\n"]).then_stall();
    served_by_b(silent, Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_first_event_is_an_error_is_served_by_the_second() {
    let error = Plan::sse(&[
        ": hi\n\n",
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
        "data: [DONE]\n\n",
    ]);
    served_by_b(error, Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_or_breaks_before_data_is_served_by_the_second() {
    let two = Two {
        a: Upstream::script([Plan::sse(&[": bye\n\n"]), Plan::sse(&["da"]).then_reset()]),
        b: b_stream(),
    };
    let layer = preset(ResilienceConfig::default());
    let svc = layer.layer(two.clone());
    for _ in 0..2 {
        let res = svc.clone().oneshot(streaming()).await.unwrap();
        assert_eq!(Served::of(res.extensions()).unwrap().index(), 1);
        assert_eq!(text(res).await, B_STREAM.concat());
    }
    // Each ended stream was retried on `a` twice before moving on.
    assert_eq!((two.a.calls(), two.b.calls()), (6, 2));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_first_event_is_not_failed_over() {
    let two = Two {
        a: Upstream::always(Plan::sse(&["data: {\"n\":1}\n\n"]).then_reset()),
        b: b_stream(),
    };
    let svc = preset(ResilienceConfig::default())
        .server()
        .layer(two.clone());
    let res = svc.oneshot(streaming()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served(&res), ("a:gpt-4o".into(), 1));
    let body = String::from_utf8(text(res).await.to_vec()).unwrap();
    assert!(body.starts_with("data: {\"n\":1}\n\n"), "{body}");
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("data: {\"error\":"), "{body}");
    assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
}
