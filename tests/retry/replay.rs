use crate::*;

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_same_bytes() {
    let upstream = Upstream::script([status(503), status(500), status(200)]);
    let client = layer().layer(upstream.clone());
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let res = client.oneshot(post(body)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.bodies(),
        vec![Bytes::from_static(body.as_bytes()); 3]
    );
}

#[tokio::test(start_paused = true)]
async fn a_chunked_streaming_body_is_replayed_byte_for_byte() {
    // Chunks produced over (virtual) time, then trailers.
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i < 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let chunk = Bytes::from(vec![b'a' + i; 1000 + usize::from(i)]);
            Some((Ok::<_, BoxError>(Frame::data(chunk)), i + 1))
        } else if i == 6 {
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "42".parse().unwrap());
            Some((Ok(Frame::trailers(t)), i + 1))
        } else {
            None
        }
    });
    let req = Request::put("http://upstream.test/upload")
        .header("x-api-key", "sk-test-123456789")
        .body(StreamBody::new(chunks))
        .unwrap();
    let upstream = Upstream::script([status(502), status(503), respond(201, &[], "stored")]);
    let client = layer().layer(upstream.clone());
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(attempts(&res), 3);

    let expected: Vec<u8> = (0..6u8)
        .flat_map(|i| vec![b'a' + i; 1000 + usize::from(i)])
        .collect();
    let seen = upstream.received();
    assert_eq!(seen.len(), 3);
    for s in seen.iter() {
        assert_eq!(s.body, expected, "byte-identical");
        assert_eq!(s.trailers.as_ref().unwrap()["x-checksum"], "42");
        assert_eq!(s.method, Method::PUT);
        assert_eq!(s.uri, "http://upstream.test/upload");
        assert_eq!(s.headers["x-api-key"], "sk-test-123456789");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_the_upstream_did_not_finish_reading_is_replayed_whole() {
    let upstream = Upstream::script([Plan::status(503).reading(5), status(200)]);
    let client = layer().layer(upstream.clone());
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = ["hello ", "streaming ", "world"]
        .into_iter()
        .map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
        .collect();
    let req = Request::post("http://upstream.test/")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        upstream.bodies(),
        [
            Bytes::from_static(b"hello "),
            Bytes::from_static(b"hello streaming world")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_over_cap_body_is_sent_once_and_not_retried() {
    // Streamed with no size hint: found over the cap while it passes.
    let upstream = Upstream::always(respond(503, &[], "busy"));
    let client = layer().max_replay_body(16).layer(upstream.clone());
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
        .map(|_| Ok(Frame::data(Bytes::from_static(b"12345678"))))
        .collect();
    let req = Request::post("http://upstream.test/")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(
        upstream.bodies()[0].len(),
        32,
        "the one attempt got all of it"
    );
    assert_eq!(attempts(&res), 1);
    assert_eq!(
        (res.status().as_u16(), text(res).await),
        (503, Bytes::from_static(b"busy"))
    );

    // Known to be over the cap from its size: never buffered.
    let upstream = Upstream::always(status(503));
    let client = layer().max_replay_body(1024).layer(upstream.clone());
    let big = Request::post("http://upstream.test/")
        .body(Full::new(Bytes::from(vec![0u8; 4096])))
        .unwrap();
    let res = client.oneshot(big).await.unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_default_cap_takes_a_chat_request_with_an_image() {
    let upstream = Upstream::script([status(503), status(200)]);
    let client = RetryLayer::new()
        .jitter(Jitter::none())
        .layer(upstream.clone());
    let image = "A".repeat(3 * 1024 * 1024);
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}]}}"#
    );
    let req = Request::post("http://upstream.test/")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 2));
    assert_eq!(
        upstream.bodies(),
        [Bytes::from(body.clone()), Bytes::from(body)]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_stops_all_further_attempts() {
    let upstream = Upstream::always(status(503));
    let client = layer()
        .max_retries(10)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .layer(upstream.clone());
    let call = client.oneshot(post("{}"));
    // Give up half-way through the second wait.
    assert!(tokio::time::timeout(Duration::from_millis(1500), call)
        .await
        .is_err());
    assert_eq!(upstream.calls(), 2);
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::task::yield_now().await;
    assert_eq!(upstream.calls(), 2, "nothing is sent after the drop");
}

#[tokio::test(start_paused = true)]
async fn a_streaming_success_is_never_re_requested() {
    // A 200 stream that fails after its first event: the caller sees the
    // failure in the body; the call is not sent again.
    let make: Arc<dyn Fn() -> UpBody + Send + Sync> = Arc::new(|| {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(
                b"data: {\"delta\":\"he\"}\n\n",
            ))),
            Err("upstream reset".into()),
        ];
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    });
    let upstream = Upstream::always(Plan::status(200).body_with(move || make()));
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{\"stream\":true}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 1));
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: {\"delta\":\"he\"}\n\n");
    assert!(body.frame().await.unwrap().is_err());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_the_request_head_again() {
    let upstream = Upstream::script([status(503), status(503), status(204)]);
    let client = layer()
        .attempt_header(http::HeaderName::from_static("x-stainless-retry-count"))
        .layer(upstream.clone());
    let mut req = post("{}");
    req.extensions_mut().insert(Marker("call-1"));
    req.headers_mut()
        .insert("authorization", "Bearer sk-secret-abcdef".parse().unwrap());
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 204);
    let seen = upstream.received();
    let counts: Vec<_> = seen
        .iter()
        .map(|s| {
            s.headers["x-stainless-retry-count"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);
    for s in seen.iter() {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.uri, "http://upstream.test/v1/chat/completions");
        assert_eq!(s.headers["authorization"], "Bearer sk-secret-abcdef");
        assert_eq!(s.headers["content-type"], "application/json");
        assert_eq!(
            s.extensions.get::<Marker>().cloned(),
            Some(Marker("call-1"))
        );
    }
}
