//! Real servers and clients on 127.0.0.1.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower_http_resilience::BoxError;

/// A service a hyper server can run (an axum `Router`, a scripted
/// [`Upstream`](super::Upstream), any service of HTTP requests).
pub trait HttpService:
    tower::Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    type ResBody: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
}

/// Serves `svc` on 127.0.0.1, HTTP/1 and HTTP/2, on the current runtime until
/// the test ends. A call that fails closes its connection, as a reset would.
pub async fn serve(svc: impl HttpService) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Serves the service `make` builds on 127.0.0.1 from its own thread and
/// runtime (a real clock, apart from a test's paused one); the thread lives
/// until the test process ends.
pub fn spawn_server<S: HttpService>(make: impl FnOnce() -> S + Send + 'static) -> SocketAddr {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            addr_tx.send(serve(make()).await).unwrap();
            std::future::pending::<()>().await
        });
    });
    addr_rx.recv().unwrap()
}

/// Runs `serve` with a listener bound to 127.0.0.1, from its own thread and
/// runtime (a real clock, apart from a test's paused one); the thread lives
/// until the test process ends. Returns the listener's address.
pub fn spawn_listener<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener).await;
        });
    });
    addr_rx.recv().unwrap()
}

/// Serves the gRPC services `router` builds, as [`spawn_listener`] says.
pub fn spawn_grpc_server(
    router: impl FnOnce() -> tonic::transport::server::Router + Send + 'static,
) -> SocketAddr {
    spawn_listener(|listener| async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        router().serve_with_incoming(incoming).await.unwrap()
    })
}

/// A hyper-util client over plain HTTP/1.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and reads the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let res = client()
        .request(req)
        .await
        .expect("request reaches the server");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body completes").to_bytes();
    (parts, body)
}

/// Keeps a paused clock from jumping ahead while a test waits on real
/// sockets: tokio does not auto-advance while a blocking task runs, so only
/// `tokio::time::advance` moves time. Dropping the guard ends the task.
pub struct HoldClock(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

pub fn hold_clock() -> HoldClock {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    HoldClock(tx)
}
