use crate::*;

#[tokio::test(start_paused = true)]
async fn ordinary_headers_just_in_time() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(60) - MS)
        .header("content-type", "application/json");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(
        plan.chunk(Duration::ZERO, "{}"),
    )));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "{}");
    assert_at(start, secs(60) - MS);
}

#[tokio::test(start_paused = true)]
async fn ordinary_headers_too_late() {
    let start = Instant::now();
    let plan = ok().after(secs(60) + MS);
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let err = call(svc, get()).await.unwrap_err();
    assert_timeout(&err, TimeoutPhase::Total);
    assert_eq!(err.message(), "request did not complete within 1m");
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn ordinary_body_must_end_within_the_total() {
    // Headers at 10 s, a part of the body, then the body stalls: tower's
    // Timeout would hang here forever.
    let start = Instant::now();
    let plan = ok()
        .after(secs(10))
        .header("content-type", "application/json")
        .chunk(secs(5), "{\"id\":")
        .then_stall();
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, get()).await.unwrap();
    assert_at(start, secs(10));
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "{\"id\":");
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn ordinary_body_just_in_time() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(10))
        .header("content-type", "application/json")
        .chunk(secs(30), "{\"id\":")
        .chunk(secs(20) - MS, "1}");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "{\"id\":1}");
    assert_at(start, secs(60) - MS);
}

#[tokio::test(start_paused = true)]
async fn streaming_headers_too_late() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(60) + MS)
        .header("content-type", "text/event-stream");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let err = call(svc, sse_get()).await.unwrap_err();
    assert_timeout(&err, TimeoutPhase::Attempt);
    assert_eq!(err.message(), "no response headers within 1m");
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn first_byte_just_in_time() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(1))
        .header("content-type", "text/event-stream")
        .chunk(secs(59) - MS, "data: 1\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "data: 1\n\n");
    assert_at(start, secs(60) - MS);
}

#[tokio::test(start_paused = true)]
async fn first_byte_too_late() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(1))
        .header("content-type", "text/event-stream")
        .chunk(secs(59) + MS, "data: 1\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "");
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::FirstByte);
    assert_eq!(err.message(), "no first byte of the stream within 1m");
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn idle_gap_just_under() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n")
        .chunk(secs(60) - MS, "data: 2\n\n")
        .chunk(secs(60) - MS, "data: 3\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "data: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert_at(start, secs(121) - 2 * MS);
}

#[tokio::test(start_paused = true)]
async fn idle_gap_just_over() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n")
        .chunk(secs(30), "data: 2\n\n")
        .chunk(secs(60) + MS, "data: 3\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "data: 1\n\ndata: 2\n\n");
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::Idle);
    assert_eq!(err.message(), "stream idle for longer than 1m");
    // Silent since the second event at 31 s.
    assert_at(start, secs(91));
}

#[tokio::test(start_paused = true)]
async fn stream_outlasts_the_ordinary_total_but_not_the_streaming_total() {
    // 250 s of events, 25 s apart: far past the ordinary 60 s, within 300 s.
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..10 {
        plan = plan.chunk(secs(25), "data: x\n\n");
    }
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.matches("data: x").count(), 10);
    assert_at(start, secs(250));
}

#[tokio::test(start_paused = true)]
async fn stream_past_the_streaming_total() {
    // Lively (an event every 24 s) but endless: cut at 300 s.
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..20 {
        plan = plan.chunk(secs(24), "data: x\n\n");
    }
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let res = call(svc, sse_get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::Total);
    assert_eq!(err.message(), "request did not complete within 5m");
    assert_eq!(text.matches("data: x").count(), 12);
    assert_at(start, secs(300));
}

#[tokio::test(start_paused = true)]
async fn sse_comments_count_as_activity_by_default() {
    let start = Instant::now();
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(keep_alive_plan())));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert!(text.ends_with("data: 2\n\n"));
    assert_at(start, secs(126));
}

#[tokio::test(start_paused = true)]
async fn sse_comments_can_be_ignored() {
    let start = Instant::now();
    let svc = TimeoutLayer::new()
        .sse_comments_are_activity(false)
        .layer_on(upstream(&Upstream::always(keep_alive_plan())));
    let res = call(svc, get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Idle);
    assert_eq!(text, "data: 1\n\n: keep-alive\n\n: keep-alive\n\n");
    // The last real event was at 1 s.
    assert_at(start, secs(61));
}

#[tokio::test(start_paused = true)]
async fn sse_comments_are_not_a_first_byte_when_ignored() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(30), ": processing\n\n")
        .chunk(secs(40), "data: 1\n\n");
    let svc = TimeoutLayer::new()
        .sse_comments_are_activity(false)
        .layer_on(upstream(&Upstream::always(plan)));
    let (_, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::FirstByte);
    assert_at(start, secs(60));
}

#[tokio::test(start_paused = true)]
async fn undetected_slow_body_is_ordinary() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let (text, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_eq!(text.len(), 5);
    assert_at(start, secs(10));
}

#[tokio::test(start_paused = true)]
async fn ordinary_marker_wins_over_an_event_stream_response() {
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "data: x\n\n");
    }
    let svc = distinct().layer_on(upstream(&Upstream::always(plan)));
    let mut req = sse_get();
    req.extensions_mut().insert(Profile::Ordinary);
    let (_, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(10));
}
