//! The server normalization layer in front of a real axum server on
//! 127.0.0.1, called by a hyper client: every failure source leaves as the
//! canonical envelope.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use support::{envelope, send, serve};
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_http_resilience::{ApiError, ErrorKind, NormalizeLayer, TimeoutPhase};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Chat {
    model: String,
    messages: Vec<serde_json::Value>,
}

async fn boom() -> &'static str {
    panic!("boom: sk-secret-value-123")
}

/// How many 64 KiB chunks of the 50 MB body were produced.
static PRODUCED: AtomicUsize = AtomicUsize::new(0);

type Events = mpsc::Receiver<Result<Frame<Bytes>, ApiError>>;

fn app(events: Arc<tokio::sync::Mutex<Option<Events>>>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|Json(_c): Json<Chat>| async { "ok" }),
        )
        .route(
            "/small",
            post(|body: Bytes| async move { body }).layer(DefaultBodyLimit::max(16)),
        )
        .route("/panic", get(boom))
        .route(
            "/teapot",
            get(|| async { (StatusCode::BAD_GATEWAY, "upstream connect error") }),
        )
        .route(
            "/overloaded",
            get(|| async {
                // As a hyper client hands on an upstream's 529 with its own reason phrase.
                let mut res = axum::response::IntoResponse::into_response((
                    StatusCode::from_u16(529).unwrap(),
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                ));
                res.extensions_mut()
                    .insert(hyper::ext::ReasonPhrase::from_static(b"Site Overloaded"));
                res
            }),
        )
        .route(
            "/canonical",
            get(|| async {
                ApiError::new(ErrorKind::RateLimited)
                    .with_retry_after(Duration::from_millis(2500))
                    .to_response::<axum::body::Body>()
            }),
        )
        .route(
            "/huge",
            get(|| async {
                // A 50 MB error body, produced lazily, 64 KiB at a time.
                let chunks = futures_util::stream::iter(0..800).map(|_| {
                    PRODUCED.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
                });
                let body = axum::body::Body::new(StreamBody::new(chunks));
                (StatusCode::INTERNAL_SERVER_ERROR, body)
            }),
        )
        .route(
            "/sse",
            get(move || {
                let events = events.clone();
                async move {
                    let rx = events.lock().await.take().expect("one stream per test");
                    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                    http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::new(body))
                        .unwrap()
                }
            }),
        )
}

use futures_util::StreamExt;

async fn start() -> (
    std::net::SocketAddr,
    mpsc::Sender<Result<Frame<Bytes>, ApiError>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let router = app(Arc::new(tokio::sync::Mutex::new(Some(rx))));
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service(router);
    (serve(svc).await, tx)
}

fn req(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &'static str,
) -> http::request::Builder {
    let _ = body;
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
}

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: &'static str,
) -> (http::response::Parts, serde_json::Value) {
    let mut b = req(addr, method, path, body);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    let (parts, bytes) = send(
        b.body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap(),
    )
    .await;
    assert_eq!(parts.headers["content-type"], "application/json", "{path}");
    assert!(parts.headers.contains_key("x-request-id"), "{path}");
    (parts, envelope(&bytes))
}

#[tokio::test]
async fn axum_rejections_become_the_envelope() {
    let (addr, _tx) = start().await;
    let json = Some("application/json");

    let (p, e) = call(addr, "POST", "/v1/chat/completions", json, "{not json").await;
    assert_eq!(
        (p.status.as_u16(), e["type"].as_str(), e["code"].as_str()),
        (400, Some("invalid_request_error"), Some("invalid_json"))
    );

    let (p, e) = call(
        addr,
        "POST",
        "/v1/chat/completions",
        json,
        r#"{"messages":[]}"#,
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str(), e["param"].as_str()),
        (422, Some("missing_required_field"), Some("model"))
    );

    let (p, e) = call(
        addr,
        "POST",
        "/v1/chat/completions",
        None,
        r#"{"model":"m","messages":[]}"#,
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let (p, e) = call(addr, "GET", "/no/such/route", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["type"].as_str(), e["code"].as_str()),
        (404, Some("not_found_error"), Some("not_found"))
    );

    let (p, e) = call(addr, "GET", "/v1/chat/completions", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert!(
        p.headers["allow"].to_str().unwrap().contains("POST"),
        "allow header kept"
    );

    let (p, e) = call(
        addr,
        "POST",
        "/small",
        None,
        "this body is longer than sixteen bytes",
    )
    .await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (413, Some("request_too_large"))
    );

    // The same route still works.
    let res = support::client()
        .request(
            req(addr, "POST", "/v1/chat/completions", "")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"model":"m","messages":[]}"#,
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        !res.headers().contains_key("x-request-id"),
        "success passes untouched"
    );
}

#[tokio::test]
async fn handler_failures_become_the_envelope() {
    let (addr, _tx) = start().await;

    let (p, e) = call(addr, "GET", "/panic", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["type"].as_str(), e["code"].as_str()),
        (500, Some("api_error"), Some("internal_error"))
    );
    assert_eq!(
        e["message"], "internal error",
        "the panic text stays off the wire"
    );

    let (p, e) = call(addr, "GET", "/teapot", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["type"].as_str(), e["message"].as_str()),
        (502, Some("upstream_error"), Some("upstream connect error"))
    );

    // A 529 becomes a 503 with the reason phrase of a 503.
    let res = support::client()
        .request(
            req(addr, "GET", "/overloaded", "")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        res.extensions().get::<hyper::ext::ReasonPhrase>().is_none(),
        "the canonical reason phrase"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(envelope(&body)["code"], "overloaded");

    // Already canonical: passed through as is.
    let (p, e) = call(addr, "GET", "/canonical", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (429, Some("rate_limit_exceeded"))
    );
    assert_eq!(p.headers["retry-after"], "3");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn handlers_can_return_api_errors() {
    async fn handler() -> Result<&'static str, ApiError> {
        Err(ApiError::new(ErrorKind::NotFound)
            .with_message("no such model: gpt-9")
            .with_param("model")
            .with_code("model_not_found"))
    }
    let app = Router::new()
        .route("/v1/models/gpt-9", get(handler))
        .layer(NormalizeLayer::new());
    let addr = serve(app).await;
    let (p, e) = call(addr, "GET", "/v1/models/gpt-9", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str(), e["param"].as_str()),
        (404, Some("model_not_found"), Some("model"))
    );
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let (addr, _tx) = start().await;
    let r = req(addr, "GET", "/nowhere", "")
        .header("x-request-id", "abc-123")
        .body(Full::default())
        .unwrap();
    let (p, _) = send(r).await;
    assert_eq!(p.headers["x-request-id"], "abc-123");
    let r = req(addr, "GET", "/nowhere", "")
        .header("x-request-id", "bad id with spaces")
        .body(Full::default())
        .unwrap();
    let (p, _) = send(r).await;
    let id = p.headers["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("req_") && id.len() == 36, "{id}");
}

#[tokio::test]
async fn a_50_mb_error_body_is_not_buffered() {
    let (addr, _tx) = start().await;
    let (p, e) = call(addr, "GET", "/huge", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str(), e["message"].as_str()),
        (500, Some("internal_error"), Some("internal error"))
    );
    // 8 KiB were wanted: one 64 KiB chunk was produced, not 800.
    let produced = PRODUCED.load(Ordering::SeqCst);
    assert!((1..=2).contains(&produced), "{produced} chunks produced");
}

#[tokio::test]
async fn sse_streams_chunk_by_chunk_and_ends_with_an_error_event() {
    let (addr, tx) = start().await;
    let res = support::client()
        .request(req(addr, "GET", "/sse", "").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();

    // Each event arrives before the next one is even produced.
    for i in 0..3 {
        let event = format!("data: {{\"n\":{i}}}\n\n");
        tx.send(Ok(Frame::data(Bytes::from(event.clone()))))
            .await
            .unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), event.as_bytes());
    }
    // The upstream stalls: the stream ends with one last event, not a reset.
    tx.send(Err(ApiError::timeout(
        TimeoutPhase::Idle,
        Duration::from_secs(60),
    )))
    .await
    .unwrap();
    let rest = body.collect().await.expect("no reset").to_bytes();
    let text = std::str::from_utf8(&rest).unwrap();
    let json = text
        .strip_prefix("data: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .expect(text);
    let e = envelope(json.as_bytes());
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("timeout_error"), Some("timeout"))
    );
    assert_eq!(e["message"], "stream idle for longer than 1m");
}

#[tokio::test]
async fn inner_errors_map_by_their_source() {
    // A service that fails the way layers below the normalization do.
    let svc = tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
        let err: Box<dyn std::error::Error + Send + Sync> = match req.uri().path() {
            "/timeout" => Box::new(tower::timeout::error::Elapsed::new()),
            "/open" => Box::new(ApiError::circuit_open(Duration::from_millis(12_300))),
            "/refused" => Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            )),
            _ => "database password=hunter2 unreachable".into(),
        };
        Err::<http::Response<Full<Bytes>>, _>(err)
    });
    let addr = serve(
        ServiceBuilder::new()
            .layer(NormalizeLayer::new())
            .service(svc),
    )
    .await;

    let (p, e) = call(addr, "GET", "/timeout", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (504, Some("timeout"))
    );
    let (p, e) = call(addr, "GET", "/open", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (503, Some("circuit_open"))
    );
    assert_eq!(p.headers["retry-after"], "13");
    let (p, e) = call(addr, "GET", "/refused", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["code"].as_str()),
        (502, Some("connection_error"))
    );
    let (p, e) = call(addr, "GET", "/other", None, "").await;
    assert_eq!(
        (p.status.as_u16(), e["message"].as_str()),
        (500, Some("internal error"))
    );
    assert!(!e.to_string().contains("hunter2"));
}

#[tokio::test]
async fn grpc_requests_get_a_grpc_status() {
    let (addr, _tx) = start().await;
    let r = req(addr, "POST", "/grpc.health.v1.Health/Check", "")
        .header("content-type", "application/grpc")
        .body(Full::default())
        .unwrap();
    let (p, body) = send(r).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.headers["content-type"], "application/grpc");
    assert_eq!(p.headers["grpc-status"], "5");
    assert!(body.is_empty());
}

/// Content types are read as the timeout layer reads them: media types in
/// any case, and `application/grpc` only with nothing or `+…` after it.
#[tokio::test]
async fn content_types_are_read_strictly_and_in_any_case() {
    use tower::ServiceExt;

    // An event stream announced in mixed case still ends with the event.
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            let frames = futures_util::stream::iter([
                Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))),
                Err(ApiError::timeout(
                    TimeoutPhase::Idle,
                    Duration::from_secs(60),
                )),
            ]);
            let res = http::Response::builder()
                .header("content-type", "Text/Event-Stream; charset=utf-8")
                .body(StreamBody::new(frames))
                .unwrap();
            Ok::<_, Infallible>(res)
        }));
    let res = svc.oneshot(Request::new(Full::default())).await.unwrap();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("an event, not a reset")
        .to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.starts_with("data: {}\n\ndata: {\"error\":"), "{text}");

    // `application/grpcx` is not gRPC: the caller gets the JSON envelope.
    let (addr, _tx) = start().await;
    let r = req(addr, "POST", "/nowhere", "")
        .header("content-type", "application/grpcx")
        .body(Full::default())
        .unwrap();
    let (p, body) = send(r).await;
    assert_eq!(p.status, 404);
    assert!(!p.headers.contains_key("grpc-status"));
    assert_eq!(envelope(&body)["code"], "not_found");
}
