//! A tonic client wrapped in the standard client stack.
//!
//! ```text
//! cargo run --example tonic_client
//! ```
//!
//! Starts a gRPC health server that reports `UNAVAILABLE` (as a gRPC status)
//! for its first two calls, then answers; the client, through the stack,
//! retries and gets the answer. A `tonic::Status` from the stack carries the
//! `ApiError` as its source.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tonic::transport::{Endpoint, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::{ApiError, ResilienceConfig};

#[tokio::main]
async fn main() {
    // A health server behind a flaky front: the first two calls get
    // UNAVAILABLE in a trailers-only response.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = FlakyFront {
        inner: health,
        calls: calls.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .add_service(flaky)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A channel sends `tonic::body::Body`: map the stack's body into one.
    let stack = ServiceBuilder::new()
        .layer(ResilienceConfig::default().build().unwrap())
        .map_request(|req: http::Request<StackBody<tonic::body::Body>>| {
            req.map(tonic::body::Body::new)
        })
        .service(channel);
    let mut client = HealthClient::new(stack);

    match client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(res) => println!(
            "status {:?} after {} calls to the server",
            res.into_inner().status(),
            calls.load(Ordering::SeqCst)
        ),
        Err(status) => {
            let api = std::error::Error::source(&status).and_then(|e| e.downcast_ref::<ApiError>());
            println!("failed: {status:?} (ApiError: {api:?})");
        }
    }
}

/// Counts calls and answers the first two with UNAVAILABLE.
#[derive(Clone)]
struct FlakyFront<S> {
    inner: S,
    calls: Arc<AtomicU32>,
}

impl<S> tonic::server::NamedService for FlakyFront<S>
where
    S: tonic::server::NamedService,
{
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for FlakyFront<S>
where
    S: tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
    >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if self.calls.fetch_add(1, Ordering::SeqCst) < 2 {
            let res = tonic::Status::unavailable("warming up").into_http();
            return Box::pin(async move { Ok(res) });
        }
        let fut = self.inner.call(req);
        Box::pin(fut)
    }
}
