//! A tonic server-streaming call (`grpc.health.v1.Health/Watch`) through
//! `TimeoutLayer` over a real HTTP/2 connection on 127.0.0.1, on a paused
//! clock: the stream lives as long as it talks and ends with an idle
//! timeout when it stops.
//!
//! `Watch` sends the current status at once and then one message per status
//! change, so the server stalls by itself between changes; the test changes
//! the status through the server's `HealthReporter`.

#![cfg(feature = "timeout")]

mod support;

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::FutureExt;
use http::Request;
use tokio::time::{advance, Instant};
use tonic::transport::{Endpoint, Server};
use tonic_health::pb::health_check_response::ServingStatus as PbStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower_http_resilience::timeout::RequestBody;
use tower_http_resilience::{ApiError, ErrorKind, TimeoutLayer, TimeoutPhase};

const MS: Duration = Duration::from_millis(1);

/// Serves the health service from its own thread and runtime (real clock);
/// its overall status starts as serving.
fn spawn_health_server() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let addr = support::spawn_grpc_server(|| Server::builder().add_service(service));
    (addr, reporter)
}

#[tokio::test(start_paused = true)]
async fn server_stream_lives_while_it_talks_and_ends_when_idle() {
    let _hold = support::hold_clock();
    let (addr, reporter) = spawn_health_server();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A tonic `Channel` takes `tonic::body::Body` requests: the layer's
    // request body is boxed into one below it.
    let svc = ServiceBuilder::new()
        .layer(
            TimeoutLayer::new()
                .total_timeout(Duration::from_secs(5))
                .stream_idle_timeout(Duration::from_secs(20))
                .set_grpc_timeout(true),
        )
        .map_request(|req: Request<RequestBody<tonic::body::Body>>| req.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(svc);

    let start = Instant::now();
    let mut stream = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, PbStatus::Serving as i32);

    // A gRPC response streams: the 5 s ordinary total does not apply.
    advance(Duration::from_secs(15)).await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let second = stream.message().await.unwrap().unwrap();
    assert_eq!(second.status, PbStatus::NotServing as i32);

    // Then silence.
    advance(Duration::from_secs(20) - MS).await;
    assert!(
        stream.message().now_or_never().is_none(),
        "not idle long enough yet"
    );
    advance(MS).await;
    let status = stream.message().await.unwrap_err();
    // tonic finds the status the `ApiError` stands for in its source
    // chain (feature `tonic`); the `ApiError` is the status's source.
    #[cfg(feature = "tonic")]
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    let api = status
        .source()
        .and_then(|s| s.downcast_ref::<ApiError>())
        .unwrap_or_else(|| panic!("an ApiError under {status:?}"));
    assert_eq!(api.kind(), ErrorKind::Timeout);
    assert_eq!(api.timeout_phase(), Some(TimeoutPhase::Idle));
    assert!(
        status.message().contains("stream idle for longer than 20s"),
        "{status:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(35));
}
