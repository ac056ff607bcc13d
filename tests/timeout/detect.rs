use crate::*;

#[tokio::test(start_paused = true)]
async fn detected_by_accept_header() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let (text, err) = read(call(svc, sse_get()).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn detected_by_marker() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let mut req = get();
    req.extensions_mut().insert(Profile::Streaming);
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn detected_by_response_content_type() {
    let start = Instant::now();
    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "data: x\n\n");
    }
    let svc = distinct().layer_on(upstream(&Upstream::always(plan)));
    let (text, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.matches("data: x").count(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn detected_by_grpc_response() {
    let start = Instant::now();
    let mut plan = ok().header("content-type", "application/grpc");
    for _ in 0..15 {
        plan = plan.chunk(secs(2), "m");
    }
    let svc = distinct().layer_on(upstream(&Upstream::always(plan.then_stall())));
    let (text, err) = read(call(svc, get()).await.unwrap().into_body()).await;
    // Streaming: alive while it talks, cut by the idle clock, not the 10 s total.
    assert_timeout(&err.unwrap(), TimeoutPhase::Idle);
    assert_eq!(text.len(), 15);
    assert_at(start, secs(35));
}

#[tokio::test(start_paused = true)]
async fn detected_by_stream_true_in_the_json_body() {
    let start = Instant::now();
    let log = Upstream::always(slow_octets());
    let svc = distinct().layer_on(upstream(&log));
    let (text, err) = read(call(svc, json_post(STREAM_BODY)).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
    let seen = log.last();
    assert!(peeked(&seen));
    assert_eq!(seen.body, STREAM_BODY.as_bytes());
    assert_eq!(seen.size_hint.exact(), Some(STREAM_BODY.len() as u64));
}

#[tokio::test(start_paused = true)]
async fn stream_false_in_the_json_body_is_ordinary() {
    let start = Instant::now();
    let log = Upstream::always(slow_octets());
    let svc = distinct().layer_on(upstream(&log));
    let body = r#"{"model":"m","stream":false}"#;
    let (_, err) = read(call(svc, json_post(body)).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(10));
    assert_eq!(log.last().body, body.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn a_large_peeked_body_arrives_identical_and_whole() {
    // 200 KiB in 1000 frames: the peek stops at 64 KiB, the inner service
    // still gets every byte, in order, and the trailers.
    let filler = "y".repeat(200 * 1024);
    let json = format!(r#"{{"stream":true,"pad":"{filler}"}}"#);
    let parts: Vec<Bytes> = json
        .as_bytes()
        .chunks(205)
        .map(Bytes::copy_from_slice)
        .collect();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let inner = tower::service_fn(move |req: Request<RequestBody<Chunked>>| {
        let seen = seen2.clone();
        async move {
            let deadline = Deadline::get(req.extensions()).unwrap();
            let collected = req.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            *seen.lock().unwrap() = Some((collected.to_bytes(), trailers, deadline));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let start = Instant::now();
    let svc = distinct().layer_on(inner);
    let res = svc.oneshot(chunked_json(parts)).await.unwrap();
    assert_eq!(read(res.into_body()).await.0, "ok");
    let (bytes, trailers, deadline) = seen.lock().unwrap().take().unwrap();
    assert_eq!(bytes.len(), json.len());
    assert!(bytes == json.as_bytes());
    assert_eq!(trailers.unwrap()["x-checksum"], "abc");
    // Streaming: the headers are due by the first-byte clock (5 s), not the
    // ordinary total (10 s).
    assert_eq!(deadline.instant(), start + secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_stream_key_past_the_peek_limit_is_not_seen() {
    let json = format!(r#"{{"pad":"{}","stream":true}}"#, "z".repeat(100));
    let log = Upstream::always(slow_octets());
    let start = Instant::now();
    let svc = distinct().body_peek_limit(64).layer_on(upstream(&log));
    let (_, err) = read(
        call(svc, json_post(json.clone()))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    // Not seen: ordinary.
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(10));
    let seen = log.last();
    assert!(peeked(&seen));
    assert_eq!(seen.body, json.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn only_json_bodies_are_peeked() {
    let log = Upstream::always(ok().chunk(Duration::ZERO, "ok"));
    // Not JSON.
    let svc = distinct().layer_on(upstream(&log));
    let req = Request::post("/")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(br#"{"stream":true}"#)))
        .unwrap();
    call(svc, req).await.unwrap();
    assert!(!peeked(&log.last()));
    // JSON without a body.
    let svc = distinct().layer_on(upstream(&log));
    call(svc, json_post(Bytes::new())).await.unwrap();
    assert!(!peeked(&log.last()));
    // Peeking turned off.
    let svc = distinct().body_peek_limit(0).layer_on(upstream(&log));
    call(svc, json_post(STREAM_BODY)).await.unwrap();
    assert!(!peeked(&log.last()));
    assert_eq!(log.last().body, STREAM_BODY.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_request_body_is_bounded_while_peeked() {
    // The caller sends the start of a JSON body and then nothing: the peek
    // waits on it, under the clock.
    let start = Instant::now();
    let frames = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
        b"{\"model\":",
    )))])
    .chain(stream::pending())
    .boxed();
    let req = Request::post("/")
        .header("content-type", "application/json")
        .body(StreamBody::new(frames))
        .unwrap();
    let called = Arc::new(Mutex::new(false));
    let called2 = called.clone();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Chunked>>| {
        *called2.lock().unwrap() = true;
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let err = distinct().layer_on(inner).oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_at(start, secs(10));
    assert!(!*called.lock().unwrap());
}
