//! Helpers shared by the integration tests: fixtures and loopback servers.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpListener;

#[cfg(feature = "stack")]
pub mod scripted;

/// One upstream error response and what the envelope must say about it.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub status: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    pub expect: Expect,
}

/// What the canonical envelope must say.
#[derive(Debug, Deserialize)]
pub struct Expect {
    pub status: u16,
    #[serde(rename = "type")]
    pub ty: String,
    pub code: String,
    #[serde(default)]
    pub param: Option<String>,
    pub retryable: bool,
    #[serde(default)]
    pub retry_after_s: Option<u64>,
}

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

/// The cases of `tests/fixtures/provider-errors.json`.
pub fn cases() -> Vec<Case> {
    let raw = include_str!("../fixtures/provider-errors.json");
    let file: File = serde_json::from_str(raw).expect("fixture file parses");
    assert!(file.cases.len() >= 20, "fixture file lost cases");
    file.cases
}

impl Case {
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap()
    }

    pub fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in &self.headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The upstream response this case describes.
    pub fn response<B: From<Bytes>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(Bytes::from(self.body.clone())));
        *res.status_mut() = self.status();
        *res.headers_mut() = self.header_map();
        res
    }
}

/// Serves `svc` on 127.0.0.1 (HTTP/1 and HTTP/2) until the test ends.
pub async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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

/// Parses a canonical envelope and returns its `error` object.
pub fn envelope(body: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only `error` at the top: {v}");
    let err = v["error"].clone();
    let keys: Vec<_> = err
        .as_object()
        .expect("error is an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys.len(), 4, "message, type, param, code: {err}");
    for k in ["message", "type", "param", "code"] {
        assert!(err.get(k).is_some(), "missing {k}: {err}");
    }
    assert!(err["message"].is_string() && err["type"].is_string() && err["code"].is_string());
    assert!(err["param"].is_null() || err["param"].is_string());
    err
}

thread_local! {
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What `tracing` printed on the current thread since [`capture_logs`].
pub struct Logs(());

impl Logs {
    pub fn text(&self) -> String {
        LOGS.with(|l| String::from_utf8_lossy(&l.borrow()).into_owned())
    }
}

struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.with(|l| l.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures `tracing` events (INFO and up) emitted on this thread, which is
/// the test's own thread under `#[tokio::test]`.
///
/// One global subscriber serves every test: a scoped one (`set_default`)
/// races with other tests' threads registering the same callsites and can
/// miss events, since callsite interest is cached process-wide.
pub fn capture_logs() -> Logs {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    LOGS.with(|l| l.borrow_mut().clear());
    Logs(())
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

/// Serves the router `app` builds, as [`spawn_listener`] says.
pub fn spawn_server(app: impl FnOnce() -> axum::Router + Send + 'static) -> SocketAddr {
    spawn_listener(|listener| async move { axum::serve(listener, app()).await.unwrap() })
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
