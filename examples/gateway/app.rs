//! The gateway itself: forward every request to the upstream through the
//! standard server stack, keyed by the JSON body's `model`.
//!
//! Kept apart from `main.rs` so that the end-to-end tests run the very same
//! code in-process.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower_http_resilience::circuit_breaker::BreakerKey;
use tower_http_resilience::retry::Attempts;
use tower_http_resilience::stack::{ResilienceServerLayer, ServerStack, StackBody};
use tower_http_resilience::timeout::Profile;
use tower_http_resilience::{ApiError, ErrorKind};

/// The largest request body the gateway accepts (a chat request with images).
pub const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

/// The response header with the attempts a forwarded call made.
pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");

/// The HTTP(S) client the gateway forwards with.
pub type UpstreamClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector>, StackBody<Full<Bytes>>>;

/// A client for `http://` and `https://` upstreams (webpki roots, HTTP/1 and 2).
pub fn upstream_client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

struct Gateway {
    stack: ServerStack<UpstreamClient>,
    upstream: Uri,
    log: bool,
}

/// The gateway's routes: everything is forwarded to `upstream` (scheme,
/// authority and an optional path prefix) through `layer`. With `log`, one
/// line per request goes to stdout.
pub fn router(
    layer: ResilienceServerLayer,
    upstream: Uri,
    client: UpstreamClient,
    log: bool,
) -> Router {
    let stack = tower::Layer::layer(&layer, client);
    Router::new()
        .fallback(forward)
        .with_state(Arc::new(Gateway {
            stack,
            upstream,
            log,
        }))
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1),
/// plus those the gateway sets itself.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

async fn forward(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let request_id = parts.headers.get("x-request-id").cloned();

    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let err = ApiError::new(ErrorKind::InvalidRequest)
                .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
                .with_code("request_too_large")
                .with_message(format!(
                    "the request body is larger than {} MiB",
                    MAX_REQUEST_BODY >> 20
                ));
            return respond(&gw, &parts, "-", started, err_response(err, request_id));
        }
    };
    let (model, stream) = inspect(&parts.headers, &body);

    let mut up = http::Request::builder()
        .method(parts.method.clone())
        .uri(join(&gw.upstream, &parts.uri))
        .body(Full::new(body))
        .expect("method and URI come from a valid request");
    // `accept-encoding` is not passed on: the gateway asks for an identity
    // encoding, since a stream that fails midway gets a last plain-text SSE
    // event appended, which must not land inside gzip.
    let headers = up.headers_mut();
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name)
            && name != header::CONTENT_LENGTH
            && name != header::ACCEPT_ENCODING
        {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(model) = &model {
        up.extensions_mut().insert(BreakerKey::new(model.clone()));
    }
    if stream {
        up.extensions_mut().insert(Profile::Streaming);
    }

    let res = match gw.stack.clone().oneshot(up).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let (mut res_parts, res_body) = res.into_parts();
    for name in &HOP_BY_HOP {
        res_parts.headers.remove(name);
    }
    // Every attempt sent for this call (also when a timeout ended it).
    let attempts = Attempts::of(&res_parts.extensions).get();
    res_parts
        .headers
        .insert(X_GATEWAY_ATTEMPTS, HeaderValue::from(attempts));
    let res = Response::from_parts(res_parts, Body::new(res_body));
    respond(&gw, &parts, model.as_deref().unwrap_or("-"), started, res)
}

fn err_response(err: ApiError, request_id: Option<http::HeaderValue>) -> Response {
    let err = match request_id.and_then(|v| v.to_str().ok().map(str::to_owned)) {
        Some(id) => err.with_request_id(id),
        None => err,
    };
    let mut res = err.to_response::<Body>();
    res.extensions_mut().insert(err);
    res
}

/// Logs one line for the request, then hands the response on.
fn respond(
    gw: &Gateway,
    req: &http::request::Parts,
    model: &str,
    started: Instant,
    res: Response,
) -> Response {
    if gw.log {
        let attempts = Attempts::of(res.extensions()).get();
        let outcome = match res.extensions().get::<ApiError>() {
            Some(err) => format!("{} {}", err.status().as_u16(), err.code()),
            None => res.status().as_u16().to_string(),
        };
        let streaming = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        println!(
            "{} {} model={model} attempts={attempts} outcome={outcome}{} latency={}ms",
            req.method,
            req.uri.path(),
            if streaming { " (streaming)" } else { "" },
            started.elapsed().as_millis(),
        );
    }
    res
}

/// The JSON body's `model` and `stream`, or the `Accept` header's wish for
/// an event stream.
fn inspect(headers: &HeaderMap, body: &[u8]) -> (Option<String>, bool) {
    #[derive(serde::Deserialize)]
    struct Peek {
        model: Option<String>,
        #[serde(default)]
        stream: bool,
    }
    let accept_sse = headers
        .get(header::ACCEPT)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    match serde_json::from_slice::<Peek>(body) {
        Ok(p) => (
            p.model.filter(|m| !m.is_empty() && m.len() <= 256),
            p.stream || accept_sse,
        ),
        Err(_) => (None, accept_sse),
    }
}

/// The upstream URI for an incoming one: the upstream's scheme and
/// authority, its path as a prefix, then the request's path and query.
fn join(upstream: &Uri, incoming: &Uri) -> Uri {
    let prefix = upstream.path().trim_end_matches('/');
    let pq = incoming.path_and_query().map_or("/", |pq| pq.as_str());
    Uri::builder()
        .scheme(upstream.scheme_str().unwrap_or("http"))
        .authority(upstream.authority().map_or("localhost", |a| a.as_str()))
        .path_and_query(format!("{prefix}{pq}"))
        .build()
        .expect("parts of valid URIs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        let up: Uri = "https://api.example.com".parse().unwrap();
        let j = |s: &str| join(&up, &s.parse().unwrap()).to_string();
        assert_eq!(
            j("/v1/chat/completions?x=1"),
            "https://api.example.com/v1/chat/completions?x=1"
        );
        let up: Uri = "http://127.0.0.1:9/api/".parse().unwrap();
        assert_eq!(
            join(&up, &"/v1/models".parse().unwrap()).to_string(),
            "http://127.0.0.1:9/api/v1/models"
        );
    }

    #[test]
    fn reads_model_and_stream() {
        let h = HeaderMap::new();
        assert_eq!(
            inspect(&h, br#"{"model":"m","stream":true}"#),
            (Some("m".into()), true)
        );
        assert_eq!(inspect(&h, br#"{"messages":[]}"#), (None, false));
        assert_eq!(inspect(&h, b"not json"), (None, false));
    }
}
