//! The client normalization layer around real clients (hyper-util, tonic)
//! talking to real servers on 127.0.0.1.

mod support;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{serve, Plan, Upstream};
use tower::{ServiceBuilder, ServiceExt};
use tower_http_resilience::{ErrorKind, NormalizeClientLayer, NormalizeLayer};

/// Chat completions are rate limited, in the OpenAI envelope with hints; the
/// model list answers.
fn upstream() -> Upstream {
    Upstream::answering(|req| {
        match req.uri.path() {
        "/v1/chat/completions" => Plan::json(
            429,
            r#"{"error":{"message":"Rate limit reached for requests","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#,
        )
        .header("retry-after-ms", "1500")
        .header("x-request-id", "upstream-req-9"),
        _ => Plan::status(200).body("{\"data\":[]}"),
    }
    })
}

#[tokio::test]
async fn upstream_errors_arrive_as_api_errors() {
    let addr = serve(upstream()).await;
    let client = ServiceBuilder::new()
        .layer(NormalizeClientLayer::new())
        .service(support::client());

    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", "Bearer sk-test-secret-key-000")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let err = client.clone().oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(err.message(), "Rate limit reached for requests");
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(err.request_id(), Some("upstream-req-9"));
    assert!(err.is_retryable());
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("sk-test"),
        "no secret in the error: {shown}"
    );

    // Success passes untouched.
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(Full::default())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "{\"data\":[]}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error() {
    // A port nobody listens on: bind, note it, close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let client = ServiceBuilder::new()
        .layer(NormalizeClientLayer::new())
        .service(support::client());
    let req = Request::get(format!("http://{addr}/"))
        .header("x-request-id", "mine-1")
        .body(Full::default())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.status().as_u16(), err.code()),
        (ErrorKind::Upstream, 502, "connection_error")
    );
    assert_eq!(err.request_id(), Some("mine-1"));
    assert!(err.is_retryable());
}

mod grpc {
    use super::*;
    use tonic::transport::{Channel, Endpoint, Server};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    /// A real tonic health server; `watched` is reported SERVING.
    async fn health_server() -> std::net::SocketAddr {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("watched", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _keep = reporter;
            Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        addr
    }

    async fn channel(addr: std::net::SocketAddr) -> Channel {
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_grpc_status_arrives_as_an_api_error() {
        let addr = health_server().await;
        let stack = ServiceBuilder::new()
            .layer(NormalizeClientLayer::new())
            .service(channel(addr).await);
        let mut client = HealthClient::new(stack);

        let ok = client
            .check(HealthCheckRequest {
                service: "watched".into(),
            })
            .await
            .unwrap();
        assert_eq!(ok.into_inner().status, 1, "SERVING passes through");

        let status = client
            .check(HealthCheckRequest {
                service: "unknown".into(),
            })
            .await
            .unwrap_err();
        let api = std::error::Error::source(&status)
            .and_then(|e| e.downcast_ref::<tower_http_resilience::ApiError>())
            .expect("the ApiError travels as the status's source");
        assert_eq!((api.kind(), api.grpc_code()), (ErrorKind::NotFound, 5));
    }

    #[tokio::test]
    async fn a_normalized_server_answers_grpc_callers_with_grpc_status() {
        // An axum server that has no gRPC routes: its 404 must reach a gRPC
        // client as a gRPC status, not as JSON.
        let app = Router::new()
            .route("/", get(|| async { "hi" }))
            .layer(NormalizeLayer::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let mut client = HealthClient::new(channel(addr).await);
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "not found");
    }
}
