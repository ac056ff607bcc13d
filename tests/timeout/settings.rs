use crate::*;

#[tokio::test(start_paused = true)]
async fn override_lengthens_the_ordinary_total() {
    let start = Instant::now();
    let svc = distinct().layer_on(upstream(&Upstream::always(slow_octets())));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().total_timeout(secs(31)));
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text.len(), 15);
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn override_sets_the_streaming_clocks() {
    let start = Instant::now();
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(1), "data: 1\n\n")
        .chunk(secs(3), "data: 2\n\n")
        .then_stall();
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().stream_idle_timeout(secs(2)));
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    let err = err.unwrap();
    assert_timeout(&err, TimeoutPhase::Idle);
    assert_eq!(err.message(), "stream idle for longer than 2s");
    assert_eq!(text, "data: 1\n\n");
    assert_at(start, secs(3));

    // First byte and streaming total.
    let plan = ok()
        .header("content-type", "text/event-stream")
        .chunk(secs(8), "data: 1\n\n");
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().stream_first_byte_timeout(secs(7)));
    let start = Instant::now();
    let (_, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::FirstByte);
    assert_at(start, secs(7));

    let mut plan = ok().header("content-type", "text/event-stream");
    for _ in 0..10 {
        plan = plan.chunk(secs(1), "data: 1\n\n");
    }
    let svc = TimeoutLayer::new().layer_on(upstream(&Upstream::always(plan)));
    let mut req = get();
    req.extensions_mut()
        .insert(TimeoutOverride::new().stream_timeout(secs(4) + MS * 500));
    let start = Instant::now();
    let (text, err) = read(call(svc, req).await.unwrap().into_body()).await;
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_eq!(text.matches("data").count(), 4);
    assert_at(start, secs(4) + MS * 500);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_published() {
    let log = Upstream::always(ok().chunk(Duration::ZERO, "ok"));
    let start = Instant::now();
    call(distinct().layer_on(upstream(&log)), get())
        .await
        .unwrap();
    assert_eq!(
        Deadline::get(&log.last().extensions).unwrap().instant(),
        start + secs(10)
    );
    call(distinct().layer_on(upstream(&log)), sse_get())
        .await
        .unwrap();
    assert_eq!(
        Deadline::get(&log.last().extensions).unwrap().instant(),
        start + secs(5)
    );

    // An earlier deadline already on the request is kept.
    let mut req = get();
    Deadline::after(secs(3)).set_earliest(req.extensions_mut());
    call(distinct().layer_on(upstream(&log)), req)
        .await
        .unwrap();
    assert_eq!(
        Deadline::get(&log.last().extensions).unwrap().instant(),
        start + secs(3)
    );

    // Turned off.
    call(
        distinct().publish_deadline(false).layer_on(upstream(&log)),
        get(),
    )
    .await
    .unwrap();
    assert!(Deadline::get(&log.last().extensions).is_none());
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_set_when_asked() {
    let log = Upstream::always(ok().header("content-type", "application/grpc"));
    let grpc = || {
        Request::post("/grpc.health.v1.Health/Watch")
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    call(distinct().layer_on(upstream(&log)), grpc())
        .await
        .unwrap();
    assert_eq!(log.last().header("grpc-timeout"), None);

    let layer = distinct().set_grpc_timeout(true);
    call(layer.layer_on(upstream(&log)), grpc()).await.unwrap();
    // The streaming total: a gRPC response is a stream.
    assert_eq!(log.last().header("grpc-timeout"), Some("100000m"));

    let mut req = grpc();
    req.extensions_mut().insert(Profile::Ordinary);
    call(layer.layer_on(upstream(&log)), req).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), Some("10000000u"));

    // A shorter timeout the caller set is kept; a longer one is lowered.
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "2S".parse().unwrap());
    call(layer.layer_on(upstream(&log)), req).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), Some("2S"));
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "1H".parse().unwrap());
    call(layer.layer_on(upstream(&log)), req).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), Some("100000m"));

    // Not a gRPC request: untouched.
    call(layer.layer_on(upstream(&log)), get()).await.unwrap();
    assert_eq!(log.last().header("grpc-timeout"), None);
}

#[tokio::test(start_paused = true)]
async fn size_hint_and_end_of_stream_are_forwarded() {
    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    let body = res.into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    let mut body = std::pin::pin!(body);
    body.frame().await.unwrap().unwrap();
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));

    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    assert!(res.body().is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn inner_errors_become_api_errors() {
    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    });
    let err = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert_eq!(err.code(), "connection_error");

    // A body error of the upstream passes through as is.
    let inner = tower::service_fn(|_req: Request<RequestBody<Full<Bytes>>>| async {
        let frames = stream::iter([Err::<Frame<Bytes>, _>(std::io::Error::other("reset"))]);
        Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    let mut body = std::pin::pin!(res.into_body());
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.downcast_ref::<std::io::Error>().is_some());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_body_or_the_future_cancels_cleanly() {
    let dropped = Arc::new(Mutex::new(false));
    let flag = dropped.clone();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let guard = DropFlag(flag.clone());
        async move {
            let s = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
                b"data: 1\n\n",
            )))])
            .chain(stream::pending())
            .map(move |f| {
                let _ = &guard;
                f
            });
            let res = Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(s))
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let res = TimeoutLayer::new()
        .layer_on(inner)
        .oneshot(get())
        .await
        .unwrap();
    let mut body = Box::pin(res.into_body());
    body.frame().await.unwrap().unwrap();
    // Waiting on the silent stream arms the idle timer.
    let waiting = tokio::time::timeout(secs(10), body.frame()).await;
    assert!(waiting.is_err());
    assert!(!*dropped.lock().unwrap());
    drop(body);
    assert!(
        *dropped.lock().unwrap(),
        "the upstream body is dropped with ours"
    );
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );

    // A future dropped while waiting for the headers drops the inner one.
    let dropped = Arc::new(Mutex::new(false));
    let flag = dropped.clone();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
        }
    });
    let fut = TimeoutLayer::new().layer_on(inner).oneshot(get());
    assert!(tokio::time::timeout(secs(5), fut).await.is_err());
    assert!(*dropped.lock().unwrap());
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn headers_timeout_each_side() {
    let start = Instant::now();
    let plan = ok()
        .after(secs(30) - MS)
        .chunk(secs(100), "late body is fine");
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let res = svc.oneshot(get().map(RequestBody::new)).await.unwrap();
    assert_at(start, secs(30) - MS);
    // The body is untouched: not bounded by this layer.
    let body = BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "late body is fine");

    let start = Instant::now();
    let plan = ok().after(secs(30) + MS);
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let Err(err) = svc.oneshot(get().map(RequestBody::new)).await else {
        panic!("the attempt must time out")
    };
    assert_timeout(&err, TimeoutPhase::Attempt);
    assert_eq!(err.message(), "no response headers within 30s");
    assert!(err.is_retryable());
    assert_at(start, secs(30));
}

#[tokio::test(start_paused = true)]
async fn headers_timeout_override() {
    let start = Instant::now();
    let plan = ok().after(secs(10));
    let svc = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let mut req = get().map(RequestBody::new);
    req.extensions_mut()
        .insert(TimeoutOverride::new().attempt_timeout(secs(4)));
    let Err(err) = svc.oneshot(req).await else {
        panic!("the attempt must time out")
    };
    assert_timeout(&err, TimeoutPhase::Attempt);
    assert_at(start, secs(4));
}

#[tokio::test(start_paused = true)]
async fn the_recommended_order_total_outside_attempt_inside() {
    // The attempt's headers arrive within its 30 s; the outer total clock
    // then bounds the body, which the attempt timeout leaves alone.
    let start = Instant::now();
    let plan = ok()
        .after(secs(20))
        .header("content-type", "application/json")
        .chunk(secs(1), "{")
        .then_stall();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new().total_timeout(secs(45)))
        .layer(AttemptTimeoutLayer::new(secs(30)))
        .service(upstream(&Upstream::always(plan)));
    let res = svc.oneshot(get()).await.unwrap();
    let (text, err) = read(res.into_body()).await;
    assert_eq!(text, "{");
    assert_timeout(&err.unwrap(), TimeoutPhase::Total);
    assert_at(start, secs(45));
}
