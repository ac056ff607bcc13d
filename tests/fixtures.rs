//! Every provider error in `tests/fixtures/provider-errors.json`, read three
//! ways: directly, through the client normalization layer, and rewritten by the
//! server normalization layer.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_http_resilience::{ApiError, NormalizeClientLayer, NormalizeLayer};

fn check(name: &str, err: &ApiError, expect: &support::Expect) {
    assert_eq!(err.status().as_u16(), expect.status, "{name}: status");
    assert_eq!(err.error_type(), expect.ty, "{name}: type");
    assert_eq!(err.code(), expect.code, "{name}: code");
    assert_eq!(err.param(), expect.param.as_deref(), "{name}: param");
    assert_eq!(err.is_retryable(), expect.retryable, "{name}: retryable");
    assert_eq!(
        err.retry_after(),
        expect.retry_after_s.map(Duration::from_secs),
        "{name}: retry-after"
    );
}

#[test]
fn every_case_reads_as_expected() {
    for case in support::cases() {
        let err = ApiError::from_upstream(case.status(), &case.header_map(), case.body.as_bytes());
        check(&case.name, &err, &case.expect);
        // The message is the upstream's when it sent one.
        if case.body.contains("\"message\"") {
            assert!(
                case.body.contains(err.message())
                    || case.body.contains(&err.message().replace('"', "\\\"")),
                "{}: message {:?} not from the body",
                case.name,
                err.message()
            );
        }
    }
}

#[tokio::test]
async fn every_case_through_the_client_layer() {
    for case in support::cases() {
        let upstream = tower::service_fn(|_req: http::Request<Full<Bytes>>| {
            let res = case.response::<Full<Bytes>>();
            async move { Ok::<_, Infallible>(res) }
        });
        let client = ServiceBuilder::new()
            .layer(NormalizeClientLayer::new())
            .service(upstream);
        let err = client
            .oneshot(http::Request::new(Full::default()))
            .await
            .unwrap_err();
        check(&case.name, &err, &case.expect);
        assert_eq!(err.upstream_status(), Some(case.status()), "{}", case.name);
        assert_eq!(
            err.upstream_body().map(|b| b.to_vec()).unwrap_or_default(),
            case.body.as_bytes(),
            "{}: raw body kept",
            case.name
        );
    }
}

#[tokio::test]
async fn every_case_rewritten_by_the_server_layer() {
    for case in support::cases() {
        let handler = tower::service_fn(|_req: http::Request<Full<Bytes>>| {
            let res = case.response::<Full<Bytes>>();
            async move { Ok::<_, Infallible>(res) }
        });
        let server = ServiceBuilder::new()
            .layer(NormalizeLayer::new())
            .service(handler);
        let req = http::Request::builder()
            .header("x-request-id", "fixture-1")
            .body(Full::default())
            .unwrap();
        let res = server.oneshot(req).await.unwrap();
        assert_eq!(res.status().as_u16(), case.expect.status, "{}", case.name);
        assert_eq!(
            res.headers()["content-type"],
            "application/json",
            "{}",
            case.name
        );
        assert_eq!(res.headers()["x-request-id"], "fixture-1", "{}", case.name);
        assert_eq!(
            res.headers()["x-should-retry"],
            if case.expect.retryable {
                "true"
            } else {
                "false"
            },
            "{}",
            case.name
        );
        assert_eq!(
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap()),
            case.expect.retry_after_s,
            "{}",
            case.name
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let err = support::envelope(&body);
        assert_eq!(err["type"], case.expect.ty.as_str(), "{}", case.name);
        assert_eq!(err["code"], case.expect.code.as_str(), "{}", case.name);
        assert_eq!(
            err["param"].as_str(),
            case.expect.param.as_deref(),
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn the_client_error_keeps_the_response_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct Note(u32);
    let upstream = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        let mut res = http::Response::new(Full::new(Bytes::from_static(b"busy")));
        *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        res.extensions_mut().insert(Note(3));
        Ok::<_, Infallible>(res)
    });
    let client = ServiceBuilder::new()
        .layer(NormalizeClientLayer::new())
        .service(upstream);
    let err = client
        .oneshot(http::Request::new(Full::default()))
        .await
        .unwrap_err();
    assert_eq!(err.extensions().get::<Note>(), Some(&Note(3)));
}
