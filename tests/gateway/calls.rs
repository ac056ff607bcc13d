use crate::*;

#[tokio::test(start_paused = true)]
async fn every_fixture_case_leaves_as_the_envelope() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(0), up_addr).await;

    for case in support::cases() {
        let headers = case
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        up.plan(
            &case.name,
            [Plan::Respond(
                case.status,
                headers,
                Bytes::from(case.body.clone()),
            )],
        );
        let (parts, body) = support::send(chat(gw, &case.name, false)).await;
        let name = &case.name;
        assert_eq!(parts.status.as_u16(), case.expect.status, "{name}");
        assert_eq!(parts.headers["content-type"], "application/json", "{name}");
        assert!(parts.headers.contains_key("x-request-id"), "{name}");
        let should_retry = if case.expect.retryable {
            "true"
        } else {
            "false"
        };
        assert_eq!(parts.headers["x-should-retry"], should_retry, "{name}");
        assert_eq!(
            parts
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap()),
            case.expect.retry_after_s,
            "{name}"
        );
        let err = support::envelope(&body);
        assert_eq!(err["type"], case.expect.ty.as_str(), "{name}");
        assert_eq!(err["code"], case.expect.code.as_str(), "{name}");
        assert_eq!(
            err["param"].as_str(),
            case.expect.param.as_deref(),
            "{name}"
        );
        assert_eq!(up.calls(name), 1, "{name}: max_retries 0 means one attempt");
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_error_table() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(3), up_addr).await;
    let fail = |status: u16| Plan::Respond(status, vec![], Bytes::new());

    // Two failures, then the default success.
    up.plan("flaky", [fail(503), fail(502)]);
    let (parts, body) = support::send(chat(gw, "flaky", false)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        body, r#"{"id":"ok-flaky-3","object":"chat.completion"}"#,
        "the third attempt's answer"
    );
    assert_eq!(up.calls("flaky"), 3);
    assert_eq!(parts.headers["x-gateway-attempts"], "3");

    // Always failing: 1 + 3 attempts, then the last failure as the envelope,
    // which tells the caller not to retry what the gateway retried.
    up.plan("dead", [fail(500), fail(500), fail(500), fail(500)]);
    let (parts, body) = support::send(chat(gw, "dead", false)).await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(support::envelope(&body)["code"], "internal_error");
    assert_eq!(up.calls("dead"), 4);
    assert_eq!(parts.headers["x-gateway-attempts"], "4");
    assert_eq!(parts.headers["x-should-retry"], "false");

    // Not retried: a client error.
    up.plan("bad", [fail(400)]);
    let (parts, _) = support::send(chat(gw, "bad", false)).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert_eq!(up.calls("bad"), 1);
    assert_eq!(parts.headers["x-gateway-attempts"], "1");
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_reports_every_attempt_sent() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(
        config()
            .total_timeout(Duration::from_secs(5))
            .attempt_timeout(Duration::from_secs(5)),
        up_addr,
    )
    .await;
    let fail = Plan::Respond(503, vec![], Bytes::new());
    up.plan("slow", [fail.clone(), fail, Plan::Hang]);

    let res = tokio::spawn(support::send(chat(gw, "slow", false)));
    while up.calls("slow") < 3 {
        tokio::task::yield_now().await;
    }
    advance(Duration::from_secs(5)).await;
    let (parts, body) = res.await.unwrap();
    assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(support::envelope(&body)["code"], "timeout");
    assert_eq!(parts.headers["x-gateway-attempts"], "3");
    assert_eq!(parts.headers["x-should-retry"], "false");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_for_one_model_only() {
    let _hold = support::hold_clock();
    let (up_addr, up) = spawn_upstream();
    let gw = gateway(config().max_retries(0).breaker_min_calls(2), up_addr).await;
    let down = || Plan::Respond(503, vec![], Bytes::from_static(b"down"));
    up.plan("sim-down", [down(), down(), down(), down()]);

    for _ in 0..2 {
        let (parts, body) = support::send(chat(gw, "sim-down", false)).await;
        assert_eq!(parts.status, 503);
        assert_eq!(support::envelope(&body)["code"], "service_unavailable");
    }
    // Open: answered at once, without calling the upstream.
    let (parts, body) = support::send(chat(gw, "sim-down", false)).await;
    assert_eq!(parts.status, 503);
    assert_eq!(support::envelope(&body)["code"], "circuit_open");
    assert_eq!(parts.headers["x-gateway-attempts"], "0", "nothing was sent");
    assert_eq!(parts.headers["x-gateway-target"], "default:sim-down");
    let wait: u64 = parts.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((27..=33).contains(&wait), "30 s ± 10 % jitter, got {wait}");
    assert_eq!(up.calls("sim-down"), 2);

    // Another model is untouched.
    let (parts, _) = support::send(chat(gw, "gpt-4o-mini", false)).await;
    assert_eq!(parts.status, 200);

    // After the open time a probe goes through; the upstream recovered.
    up.plans.lock().unwrap().remove("sim-down");
    advance(Duration::from_secs(wait)).await;
    let (parts, _) = support::send(chat(gw, "sim-down", false)).await;
    assert_eq!(parts.status, 200);
    assert_eq!(up.calls("sim-down"), 3);
}
