//! tonic keeps its status: a tonic client over the standard client stack
//! around a `Channel` gets the `tonic::Status` code the failure stands for
//! (`NOT_FOUND` stays `NotFound`, `UNAVAILABLE` stays `Unavailable`, an open
//! breaker is `Unavailable`, a timeout `DeadlineExceeded`), with the
//! `ApiError` as the status's source.
//!
//! A real tonic health server on 127.0.0.1 (its own thread and runtime);
//! the client runs on a paused, held clock (`support::hold_clock`), retries
//! without waiting.

#![cfg(all(feature = "tonic", feature = "stack"))]

mod support;

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use tokio::time::advance;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::{HealthReporter, HealthService};
use tower::ServiceBuilder;
use tower_http_resilience::circuit_breaker::{CircuitBreakerHandle, GlobalKey};
use tower_http_resilience::retry::{Attempts, Backoff, Jitter};
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::{ApiError, ErrorKind, ResilienceConfig, TimeoutPhase};

/// Serves the health service from its own thread and runtime (real clock).
/// A call with `x-fail: unavailable` in its metadata is answered
/// `UNAVAILABLE` before it reaches the service.
fn spawn_health_server() -> SocketAddr {
    support::spawn_grpc_server(|| {
        let service = HealthService::from_health_reporter(HealthReporter::new());
        let service = HealthServer::with_interceptor(service, |req: tonic::Request<()>| match req
            .metadata()
            .get("x-fail")
        {
            Some(v) if v == "unavailable" => Err(Status::unavailable("backend down")),
            _ => Ok(req),
        });
        Server::builder().add_service(service)
    })
}

type Client = HealthClient<
    tower_http_resilience::stack::ClientStack<
        tower::util::MapRequest<
            tonic::transport::Channel,
            fn(Request<StackBody<tonic::body::Body>>) -> Request<tonic::body::Body>,
        >,
        GlobalKey,
    >,
>;

/// A health client through the standard stack (one global breaker, retries
/// that do not wait) to `addr`.
fn client(addr: SocketAddr, config: ResilienceConfig) -> (Client, CircuitBreakerHandle) {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let layer = config.build().unwrap().key(GlobalKey).map_retry(|r| {
        r.backoff(Backoff::constant(Duration::ZERO))
            .jitter(Jitter::none())
    });
    let handle = layer.breaker_handle();
    let to_channel: fn(Request<StackBody<tonic::body::Body>>) -> Request<tonic::body::Body> =
        |req| req.map(tonic::body::Body::new);
    let stack = ServiceBuilder::new()
        .layer(layer)
        .map_request(to_channel)
        .service(channel);
    (HealthClient::new(stack), handle)
}

fn check(service: &str) -> tonic::Request<HealthCheckRequest> {
    tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    })
}

/// The `ApiError` under a status tonic returned.
fn api_error(status: &Status) -> &ApiError {
    status
        .source()
        .and_then(|s| s.downcast_ref::<ApiError>())
        .unwrap_or_else(|| panic!("an ApiError under {status:?}"))
}

#[tokio::test(start_paused = true)]
async fn not_found_stays_not_found() {
    let _hold = support::hold_clock();
    let (mut client, _) = client(spawn_health_server(), ResilienceConfig::default());

    let ok = client.check(check("")).await.unwrap().into_inner();
    assert_eq!(ok.status, 1, "SERVING");

    let status = client.check(check("no-such-service")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "service not registered");
    let api = api_error(&status);
    assert_eq!(api.kind(), ErrorKind::NotFound);
    assert_eq!(api.grpc_code(), Code::NotFound as i32);
    assert_eq!(Attempts::of(api.extensions()).get(), 1, "not retried");
}

#[tokio::test(start_paused = true)]
async fn unavailable_stays_unavailable_after_the_retries() {
    let _hold = support::hold_clock();
    let (mut client, _) = client(spawn_health_server(), ResilienceConfig::default());

    let mut req = check("");
    req.metadata_mut()
        .insert("x-fail", "unavailable".parse().unwrap());
    let status = client.check(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "backend down");
    let api = api_error(&status);
    assert_eq!(api.kind(), ErrorKind::Unavailable);
    assert_eq!(Attempts::of(api.extensions()).get(), 4, "1 + 3 retries");
    assert!(
        !api.is_retryable(),
        "the stack spent its retries: its caller is told not to retry"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_unavailable() {
    let _hold = support::hold_clock();
    let (mut client, handle) = client(spawn_health_server(), ResilienceConfig::default());
    handle.force_open("", Duration::from_secs(30));

    let status = client.check(check("")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let api = api_error(&status);
    assert_eq!(api.code(), "circuit_open");
    assert_eq!(api.retry_after(), Some(Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_deadline_exceeded() {
    let _hold = support::hold_clock();
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let config = ResilienceConfig::default()
        .max_retries(0)
        .attempt_timeout(Duration::from_secs(2));
    let (mut client, _) = client(addr, config);

    let call = tokio::spawn(async move { client.check(check("")).await });
    // Let the call reach the socket, then let the attempt's clock run out.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    advance(Duration::from_secs(2)).await;
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    let api = api_error(&status);
    assert_eq!(api.timeout_phase(), Some(TimeoutPhase::Attempt));
    held.abort();
}
