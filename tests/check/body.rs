use crate::*;

#[tokio::test]
async fn a_body_in_many_frames_is_joined_once_and_keeps_its_trailers() {
    let body = chat(r#","stream":true"#);
    let parts: Vec<Vec<u8>> = body.as_bytes().chunks(7).map(<[u8]>::to_vec).collect();
    let (mut chunks, read) = Chunks::new(parts);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    chunks.trailers = Some(trailers);
    let seen = Seen::default();
    let svc = CheckLayer::new().layer(upstream::<Chunks>(&seen));
    svc.oneshot(post_chunks(CHAT, chunks)).await.unwrap();
    assert_eq!(read.load(Ordering::SeqCst), body.len(), "read once");
    assert_eq!(seen.last_body(), body.as_bytes());
    let calls = seen.0.lock().unwrap();
    assert_eq!(calls[0].trailers.as_ref().unwrap()["x-checksum"], "abc");
}

#[tokio::test]
async fn requests_that_are_not_checked_are_not_read() {
    let invalid = b"not json at all".to_vec();
    let cases = [
        ("GET", CHAT, Some("application/json"), None),
        ("POST", "/v1/models", Some("application/json"), None),
        (
            "POST",
            "/v1/chat/completions/extra",
            Some("application/json"),
            None,
        ),
        ("POST", CHAT, Some("text/plain"), None),
        ("POST", CHAT, Some("multipart/form-data; boundary=x"), None),
        ("POST", CHAT, Some("application/json"), Some("gzip")),
    ];
    for (method, path, ct, encoding) in cases {
        let (body, read) = Chunks::new(vec![invalid.clone()]);
        let mut req = Request::builder().method(method).uri(path);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        if let Some(enc) = encoding {
            req = req.header("content-encoding", enc);
        }
        let req = req.body(body).unwrap();
        let read_at_call = Arc::new(AtomicUsize::new(usize::MAX));
        let at_call = read_at_call.clone();
        let svc =
            CheckLayer::new().layer(tower::service_fn(move |req: Request<CheckBody<Chunks>>| {
                at_call.store(read.load(Ordering::SeqCst), Ordering::SeqCst);
                assert!(!req.body().was_checked());
                assert!(req.extensions().get::<PromptTokens>().is_none());
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, Infallible>(body)
                }
            }));
        let body = svc.oneshot(req).await.unwrap();
        assert_eq!(
            read_at_call.load(Ordering::SeqCst),
            0,
            "{method} {path} {ct:?}: unread"
        );
        assert_eq!(body, &invalid[..]);
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_answered_413_having_read_no_more() {
    let layer = CheckLayer::new().max_body(1024);
    // A declared length over the cap: nothing is read.
    let (mut body, read) = Chunks::new(vec![vec![b' '; 2000]]);
    body.exact = true;
    let seen = Seen::default();
    let err = layer
        .layer(upstream::<Chunks>(&seen))
        .oneshot(post_chunks(CHAT, body))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (413, "request_too_large")
    );
    assert_eq!(err.error_type(), "invalid_request_error");
    assert_eq!(read.load(Ordering::SeqCst), 0);
    // A body that turns out too long: read up to the frame that crossed the
    // cap, and no further.
    let (body, read) = Chunks::new(vec![vec![b' '; 600], vec![b' '; 600], vec![b' '; 600]]);
    let err = layer
        .layer(upstream::<Chunks>(&seen))
        .oneshot(post_chunks(CHAT, body))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 413);
    assert_eq!(read.load(Ordering::SeqCst), 1200);
    assert_eq!(seen.calls(), 0);
    // Exactly the cap is fine.
    let mut exact = chat("").into_bytes();
    exact.resize(1024, b' ');
    let (body, _) = Chunks::new(vec![exact.clone()]);
    layer
        .layer(upstream::<Chunks>(&seen))
        .oneshot(post_chunks(CHAT, body))
        .await
        .unwrap();
    assert_eq!(seen.last_body(), exact);
}

#[tokio::test]
async fn a_refusal_leaves_the_inner_service_uncalled_and_the_next_call_works() {
    let seen = Seen::default();
    let mut svc = CheckLayer::new().layer(upstream::<Full<Bytes>>(&seen));
    svc.ready().await.unwrap();
    let err = svc.call(post(CHAT, "{}")).await.unwrap_err();
    assert_eq!(err.param(), Some("model"));
    svc.ready().await.unwrap();
    svc.call(post(CHAT, &chat(""))).await.unwrap();
    assert_eq!(seen.calls(), 1);
}

#[tokio::test]
async fn a_server_answers_the_envelope_on_the_wire_and_echoes_valid_bodies() {
    use axum::routing::post as route_post;
    use tower::ServiceBuilder;
    use tower_http_resilience::NormalizeLayer;

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new()
        .route(
            CHAT,
            route_post(move |body: Bytes| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { body }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(NormalizeLayer::new())
                .layer(CheckLayer::new().context_window("small", 1000)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let send = |body: String| {
        let req = Request::post(format!("http://{addr}{CHAT}"))
            .header("content-type", "application/json")
            .header("x-request-id", "req-42")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let client = client.clone();
        async move {
            let res = client.request(req).await.unwrap();
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    let bad = r#"{"model":"gpt-4o","messages":[{"role":"user"},{"role":"wizard"}]}"#;
    let (parts, body) = send(bad.into()).await;
    assert_eq!(parts.status, 400);
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["x-request-id"], "req-42");
    assert_eq!(parts.headers["x-should-retry"], "false");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_value");
    assert_eq!(v["error"]["param"], "messages[1].role");

    let long = serde_json::to_string(&long_prose()).unwrap();
    let too_long =
        format!(r#"{{"model":"small","messages":[{{"role":"user","content":{long}}}]}}"#);
    let (parts, body) = send(too_long).await;
    assert_eq!(parts.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "messages");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no call reached the handler"
    );

    let good = chat(r#","stream_options":{"include_usage":true},"vendor":"x""#);
    let (parts, body) = send(good.clone()).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, good.as_bytes());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
