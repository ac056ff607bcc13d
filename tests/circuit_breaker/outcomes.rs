use crate::*;

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_headers_is_a_failure() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let (tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    // Nothing is recorded at the headers.
    assert_eq!(handle.snapshot("").unwrap().calls(), 0);
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))))
        .await
        .unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: {}\n\n");
    assert_eq!(handle.snapshot("").unwrap().calls(), 0);
    tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")))
        .await
        .unwrap();
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(handle.state(""), Some(CircuitState::Open));

    // A stream that ends cleanly is a success, recorded at its end.
    handle.force_closed("");
    let (tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
        .await
        .unwrap();
    drop(tx);
    let collected = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(collected, "a");
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.calls(), snap.failures()),
        (CircuitState::Closed, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_or_headers_counts() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(4).failure_ratio(0.75));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push(grpc_trailers("0"));
    up.push(grpc_trailers("5")); // NOT_FOUND: the upstream is fine
    up.push(grpc_trailers("14")); // UNAVAILABLE
    for _ in 0..3 {
        assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    }
    let snap = handle.snapshot("").unwrap();
    assert_eq!((snap.calls(), snap.failures()), (3, 1));
    // Trailers-only answers carry the status in the headers.
    up.push(Plan::grpc("13"));
    up.push(Plan::grpc("4"));
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed)); // 2/4
    send(&mut svc, None).await.unwrap();
    assert_eq!(handle.state(""), Some(CircuitState::Closed)); // 3/5
    up.push(grpc_trailers("2")); // UNKNOWN
    send(&mut svc, None).await.unwrap();
    let snap = handle.snapshot("").unwrap();
    assert_eq!(snap.state(), CircuitState::Closed, "{snap:?}"); // 4/6
    up.push(grpc_trailers("14"));
    send(&mut svc, None).await.unwrap(); // 5/7
    up.push(grpc_trailers("14"));
    send(&mut svc, None).await.unwrap(); // 6/8 = 0.75
    assert_eq!(handle.state(""), Some(CircuitState::Open));
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_early_is_not_counted_and_gives_its_probe_back() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    let (tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert!(!res.body().is_end_stream());
    drop(res);
    drop(tx);
    assert_eq!(handle.snapshot("").unwrap().calls(), 0);

    // In half-open, the probe whose body is dropped frees its slot.
    handle.force_open("", Duration::from_secs(5));
    advance(Duration::from_secs(5)).await;
    let (_tx, rx) = mpsc::channel(4);
    up.push(Plan::status(200).fed_by(rx));
    let res = ServiceExt::<Req>::ready(&mut svc)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(handle.snapshot("").unwrap().probes_in_flight(), 1);
    assert_eq!(
        send(&mut svc, None).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    drop(res);
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.state(), snap.probes_in_flight()),
        (CircuitState::HalfOpen, 0)
    );
    assert_eq!(send(&mut svc, None).await.unwrap(), 200);
    assert_eq!(handle.state(""), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn errors_of_inner_layers_are_classified() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(1000));
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());

    up.push(Plan::error(io::ErrorKind::ConnectionRefused));
    up.push(Plan::fail(|| {
        ApiError::timeout(
            tower_http_resilience::TimeoutPhase::Attempt,
            Duration::from_secs(30),
        )
        .into()
    }));
    up.push(Plan::fail(|| ApiError::new(ErrorKind::RateLimited).into()));
    up.push(Plan::fail(|| {
        ApiError::circuit_open(Duration::from_secs(1)).into()
    }));
    up.push(Plan::error(io::ErrorKind::Other));
    let mut kinds = Vec::new();
    for _ in 0..5 {
        kinds.push(send(&mut svc, None).await.unwrap_err().kind());
    }
    assert_eq!(
        kinds,
        [
            ErrorKind::Upstream,
            ErrorKind::Timeout,
            ErrorKind::RateLimited,
            ErrorKind::CircuitOpen,
            ErrorKind::Internal
        ]
    );
    // Refused, timed out and the unknown error count; the rate limit is a
    // success; another breaker's rejection is not recorded.
    let snap = handle.snapshot("").unwrap();
    assert_eq!((snap.calls(), snap.failures()), (4, 3));
    assert_eq!(svc.get_ref().calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides() {
    let layer = CircuitBreakerLayer::with_config(config().min_calls(2)).classifier(
        |obs: Observation<'_>| match obs {
            Observation::Response { status, .. } if status == 429 => Verdict::Failure,
            Observation::Response { status, .. } if status == 500 => Verdict::Ignore,
            other => DefaultClassifier.classify(other),
        },
    );
    let handle = layer.handle();
    let up = Upstream::default();
    let mut svc = layer.layer(up.clone());
    for s in [500, 500, 200] {
        up.push(Plan::status(s));
        assert_eq!(send(&mut svc, None).await.unwrap(), s);
    }
    // The 500s were ignored: only the 200 is in the window.
    let snap = handle.snapshot("").unwrap();
    assert_eq!(
        (snap.calls(), snap.failures(), snap.state()),
        (1, 0, CircuitState::Closed)
    );
    // The 429 is a failure: one of two calls fails, the breaker opens.
    up.push(Plan::status(429));
    assert_eq!(send(&mut svc, None).await.unwrap(), 429);
    assert_eq!(handle.state(""), Some(CircuitState::Open));
    assert_eq!(
        send(&mut svc, None).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(up.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn response_bodies_pass_through_unchanged() {
    let layer = CircuitBreakerLayer::new();
    let handle = layer.handle();
    let inner = tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let mut svc = layer.layer(inner);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.body().size_hint().exact(), Some(5));
    assert!(!res.body().is_end_stream());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello");
    assert_eq!(handle.snapshot("").unwrap().calls(), 1);
}
