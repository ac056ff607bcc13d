use crate::*;

#[tokio::test]
async fn failures_of_every_origin_carry_no_credential() {
    let secret = CREDENTIALS[2].1;
    let logs = capture_logs();
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service_fn(failing);
    for path in [
        "/rendered",
        "/error",
        "/unknown",
        "/panic",
        "/stream",
        "/grpc",
    ] {
        let content_type = if path == "/grpc" {
            "application/grpc"
        } else {
            "application/json"
        };
        let req = Request::get(path)
            .header("api-key", secret)
            .header(CONTENT_TYPE, content_type)
            .body(Body::empty())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        let bytes = collected.to_bytes();
        assert_clean_head(path, &parts, &[secret]);
        assert_clean(path, &bytes, &[secret]);
        if let Some(err) = parts.extensions.get::<ApiError>() {
            assert_clean(path, format!("{err} {err:?}").as_bytes(), &[secret]);
        }
        for (name, value) in trailers.iter().flatten() {
            assert_clean(
                &format!("{path}: trailer {name}"),
                value.as_bytes(),
                &[secret],
            );
        }
        match path {
            "/stream" => {
                let text = std::str::from_utf8(&bytes).unwrap();
                assert!(text.starts_with("data: {\"n\":1}\n\n"), "{text}");
                assert!(text.ends_with(&format!("upstream reset for {REDACTED}\",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_error\"}}}}\n\n")), "{text}");
            }
            "/grpc" => {
                let trailers = trailers.expect("trailers");
                assert_eq!(trailers["grpc-message"], "invalid%20key%20[redacted]");
            }
            _ => {
                assert!(parts.status.is_client_error() || parts.status.is_server_error());
                support::envelope(&bytes);
            }
        }
    }
    assert_clean("logs", logs.text().as_bytes(), &[secret]);
    assert!(logs.text().contains("handler panicked"), "{}", logs.text());
}

#[tokio::test]
async fn client_errors_and_headers_carry_no_credential() {
    let up = serve(upstream()).await;
    let client = ServiceBuilder::new()
        .layer(NormalizeClientLayer::new().secret(UPSTREAM_KEY))
        .map_request(|mut req: Request<Full<Bytes>>| {
            // A layer below the normalization adds the upstream key.
            req.headers_mut()
                .insert("x-upstream-key", HeaderValue::from_static(UPSTREAM_KEY));
            req
        })
        .service(support::client());
    for credential in CREDENTIALS {
        let secrets = [credential.1, UPSTREAM_KEY];
        for how in ECHOES {
            let what = format!("{how} / {}", credential.0);
            match client.clone().oneshot(request(up, how, credential)).await {
                Ok(res) => {
                    assert_eq!(how, "success-header");
                    let (parts, body) = res.into_parts();
                    assert_clean_head(&what, &parts, &secrets);
                    let body = body.collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], b"{\"ok\":true}");
                }
                Err(err) => {
                    let shown = format!(
                        "{err} {err:?} {} {} {:?} {:?}",
                        err.message(),
                        err.code(),
                        err.param(),
                        err.request_id()
                    );
                    assert_clean(&what, shown.as_bytes(), &secrets);
                    assert_clean(&what, &err.to_json(), &secrets);
                    if let Some(body) = err.upstream_body() {
                        assert_clean(&format!("{what}: upstream body"), body, &secrets);
                    }
                    let (parts, _) = err.to_response::<Bytes>().into_parts();
                    assert_clean_head(&what, &parts, &secrets);
                }
            }
        }
    }
}
