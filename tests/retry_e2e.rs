//! The retry layer end to end: the scripted upstream served by hyper on
//! 127.0.0.1 and called through hyper-util's client, and a real tonic server called through a `Channel`,
//! on 127.0.0.1 (paused clock: the waits take no real time).

#![cfg(feature = "retry")]

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Plan, Upstream};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http_resilience::retry::{
    Attempts, Backoff, Jitter, ReplayBody, RetryBudget, RetryLayer,
};

fn hyper_client(
) -> Client<hyper_util::client::legacy::connect::HttpConnector, ReplayBody<Full<Bytes>>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn quick() -> RetryLayer {
    RetryLayer::new()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .jitter(Jitter::none())
        .budget(RetryBudget::unlimited())
}

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;

#[tokio::test(start_paused = true)]
async fn hyper_server_failing_twice_then_answering() {
    // Two failures, then an answer that echoes the request body.
    let up =
        Upstream::answering(|req| Plan::json(200, [&b"echo:"[..], &req.body].concat())).first([
            Plan::json(
                503,
                r#"{"error":{"message":"busy","type":"service_unavailable"}}"#,
            ),
            Plan::json(
                429,
                r#"{"error":{"message":"Rate limit exceeded","type":"rate_limit_error"}}"#,
            )
            .header("retry-after-ms", "250"),
        ]);
    let addr = support::serve(up.clone()).await;

    let client = ServiceBuilder::new().layer(quick()).service(hyper_client());
    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap();
    let start = Instant::now();
    // The call's future is Send + 'static: it can be spawned.
    let res = tokio::spawn(client.oneshot(req)).await.unwrap().unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.extensions().get::<Attempts>().map(|a| a.get()), Some(3));
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100 + 250),
        "the backoff, then the server's retry-after-ms"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("echo:{CHAT}"));
    assert_eq!(up.bodies(), vec![Bytes::from_static(CHAT.as_bytes()); 3]);
}

#[tokio::test(start_paused = true)]
async fn hyper_server_quota_error_comes_back_once_and_whole() {
    let quota = format!(
        r#"{{"error":{{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}},"doc":"{}"}}"#,
        "q".repeat(30_000)
    );
    let up = Upstream::always(
        Plan::status(429)
            .header("x-request-id", "req-7")
            .body(quota.clone()),
    );
    let addr = support::serve(up.clone()).await;

    let client = quick().layer(hyper_client());
    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["x-request-id"], "req-7");
    assert_eq!(Attempts::of(res.extensions()).get(), 1);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), quota);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn hyper_connection_refused_is_retried_and_reported() {
    // A port nothing listens on: bind, note the port, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = quick().max_retries(2).layer(hyper_client());
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(Full::default())
        .unwrap();
    let start = Instant::now();
    let err = client.oneshot(req).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(err.extensions().get::<Attempts>().map(|a| a.get()), Some(3));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

// ---------------------------------------------------------------------------
// tonic

/// A health service that is UNAVAILABLE for its first `failures` checks.
struct Flaky {
    failures: u32,
    calls: AtomicU32,
    services: Mutex<Vec<String>>,
}

#[tonic::async_trait]
impl Health for Flaky {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.services
            .lock()
            .unwrap()
            .push(request.into_inner().service);
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(tonic::Status::unavailable("warming up"));
        }
        Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>,
    >;

    async fn watch(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

async fn tonic_server(failures: u32) -> (std::net::SocketAddr, Arc<Flaky>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flaky = Arc::new(Flaky {
        failures,
        calls: AtomicU32::new(0),
        services: Mutex::default(),
    });
    let server = tonic::transport::Server::builder()
        .add_service(HealthServer::from_arc(flaky.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (addr, flaky)
}

/// The retry layer in front of a tonic `Channel`: the channel wants
/// `tonic::body::Body`, so the replayed body is mapped into one.
async fn health_client(
    addr: std::net::SocketAddr,
    layer: RetryLayer,
) -> HealthClient<
    impl tonic::client::GrpcService<
            tonic::body::Body,
            ResponseBody = impl http_body::Body<
                Data = Bytes,
                Error = impl Into<tonic::codegen::StdError>,
            > + Send,
        > + Clone,
> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .map_request(|req: Request<ReplayBody<tonic::body::Body>>| req.map(tonic::body::Body::new))
        .service(channel);
    HealthClient::new(svc)
}

#[tokio::test(start_paused = true)]
async fn tonic_server_unavailable_twice_then_serving() {
    let (addr, flaky) = tonic_server(2).await;
    let mut client = health_client(addr, quick()).await;
    let start = Instant::now();
    let reply = client
        .check(HealthCheckRequest {
            service: "chat".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().status, ServingStatus::Serving as i32);
    assert_eq!(
        reply.extensions().get::<Attempts>().map(|a| a.get()),
        Some(3)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    // The encoded request body was replayed: the server decoded it each time.
    assert_eq!(*flaky.services.lock().unwrap(), ["chat", "chat", "chat"]);
}

#[tokio::test(start_paused = true)]
async fn tonic_server_always_unavailable_gives_the_last_status() {
    let (addr, flaky) = tonic_server(u32::MAX).await;
    let mut client = health_client(addr, quick().max_retries(2)).await;
    let status = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "warming up");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
}
