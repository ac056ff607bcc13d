use crate::*;

#[tokio::test(start_paused = true)]
async fn a_quota_429_is_not_retried_and_reaches_the_caller_whole() {
    // Longer than the peek limit, to show nothing is lost.
    let quota = format!(
        r#"{{"error":{{"message":"Quota insufficient","type":"insufficient_quota","code":"insufficient_quota"}},"padding":"{}"}}"#,
        "x".repeat(20_000)
    );
    let upstream = Upstream::always(Plan::json(429, quota.clone()));
    let client = layer().layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.body().size_hint().exact(), Some(quota.len() as u64));
    assert_eq!(text(res).await, quota.as_bytes());

    // The same body in 1 KiB chunks, as it arrives over a network: the
    // peek stops at its limit, mid-envelope, and still finds the quota code.
    let make: Arc<dyn Fn() -> UpBody + Send + Sync> = {
        let quota = Bytes::from(quota.clone());
        Arc::new(move || {
            let chunks: Vec<Result<Frame<Bytes>, BoxError>> = quota
                .chunks(1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync()
        })
    };
    let upstream = Upstream::always(Plan::status(429).body_with(move || make()));
    let res = layer()
        .peek_limit(64)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
    assert_eq!(text(res).await, quota.as_bytes());

    // A rate limit is retried; the last one comes back whole too.
    let limit = r#"{"error":{"message":"Rate limit exceeded","type":"rate_limit_error"}}"#;
    let upstream = Upstream::always(respond(429, &[], limit));
    let client = layer().layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (4, 4));
    assert_eq!(text(res).await, limit);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_error_body_is_handed_back_after_the_peek_timeout() {
    let make: Arc<dyn Fn() -> UpBody + Send + Sync> = Arc::new(|| {
        let first = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(
            Bytes::from_static(b"{\"error\":"),
        ))]);
        let rest = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Frame::data(Bytes::from_static(b"{}}")))
        });
        StreamBody::new(first.chain(rest)).boxed_unsync()
    });
    let upstream = Upstream::always(Plan::status(429).body_with(move || make()));
    let client = layer()
        .peek_timeout(Duration::from_secs(2))
        .layer(upstream.clone());
    let start = Instant::now();
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
    assert_eq!(
        text(res).await,
        "{\"error\":{}}",
        "the caller still gets every byte"
    );
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_status() {
    let upstream = Upstream::always(respond(503, &[("x-should-retry", "false")], ""));
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));

    let upstream = Upstream::script([respond(400, &[("x-should-retry", "true")], ""), status(200)]);
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), upstream.calls()), (200, 2));
}

#[tokio::test(start_paused = true)]
async fn conflict_is_retried_by_default_and_can_be_made_final() {
    let upstream = Upstream::script([status(409), status(200)]);
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 2));

    let upstream = Upstream::always(status(409));
    let client = layer()
        .policy(DefaultPolicy::new().no_retry_status(StatusCode::CONFLICT))
        .layer(upstream.clone());
    let res = client.oneshot(post("{}")).await.unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (409, 1));
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_final() {
    for code in [400, 401, 402, 403, 404, 422] {
        let upstream = Upstream::always(status(code));
        let res = layer()
            .layer(upstream.clone())
            .oneshot(post("{}"))
            .await
            .unwrap();
        assert_eq!(
            (res.status().as_u16(), upstream.calls()),
            (code, 1),
            "{code}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn connection_errors_and_attempt_timeouts_are_retried() {
    let upstream = Upstream::always(Plan::fail(|| {
        Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }));
    let err = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.code()),
        (ErrorKind::Upstream, "connection_error")
    );
    assert_eq!((upstream.calls(), err_attempts(&err)), (4, 4));

    let upstream = Upstream::script([
        Plan::fail(|| ApiError::timeout(TimeoutPhase::Attempt, Duration::from_secs(30)).into()),
        Plan::fail(|| Box::new(tower::timeout::error::Elapsed::new())),
        respond(200, &[], "ok"),
    ]);
    let res = layer()
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!(
        (attempts(&res), text(res).await),
        (3, Bytes::from_static(b"ok"))
    );

    // An unrecognised inner error is retried as an internal error, and its
    // text stays out of the message.
    let upstream = Upstream::always(Plan::fail(|| "db password=hunter2".into()));
    let err = layer()
        .max_retries(1)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!((err.kind(), upstream.calls()), (ErrorKind::Internal, 2));
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test(start_paused = true)]
async fn a_custom_policy_decides() {
    let upstream = Upstream::script([status(418), status(418), status(200)]);
    let teapot = |o: &Outcome<'_>| {
        if o.status() == Some(StatusCode::IM_A_TEAPOT) && o.attempt() < 5 {
            Decision::Retry
        } else {
            Decision::DoNotRetry
        }
    };
    let res = layer()
        .policy(teapot)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), attempts(&res)), (200, 3));

    // A policy that reads the body sees its start, and the caller all of it.
    let upstream = Upstream::script([
        respond(500, &[], "transient: try again"),
        respond(500, &[], "fatal: corrupt"),
    ]);
    let by_body = |o: &Outcome<'_>| match o.body() {
        None => Decision::ReadBody,
        Some(b) if b.starts_with(b"transient") => Decision::Retry,
        Some(_) => Decision::DoNotRetry,
    };
    let res = layer()
        .policy(by_body)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (2, 2));
    assert_eq!(text(res).await, "fatal: corrupt");
}

#[tokio::test(start_paused = true)]
async fn max_retries_zero_sends_once() {
    let upstream = Upstream::always(status(503));
    let res = layer()
        .max_retries(0)
        .layer(upstream.clone())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!((upstream.calls(), attempts(&res)), (1, 1));
}
