//! No credential comes back. The values of `authorization`, `x-api-key` and
//! `api-key` a client sent (whole, and every token of 8 or more characters in
//! them) and the secrets configured on the layer are removed from every
//! error response (body and headers), SSE error event, gRPC status and
//! response header, in whatever form an upstream echoes them; success bodies
//! pass byte for byte.
//!
//! The gateway cases run a careless upstream (an axum server that echoes
//! every credential it sees) behind a forwarding service with
//! `NormalizeLayer` on 127.0.0.1, called by a hyper client.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::response::Response as AxumResponse;
use axum::Router;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use proptest::prelude::*;
use support::{capture_logs, serve};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_http_resilience::error::REDACTED;
use tower_http_resilience::{ApiError, ErrorKind, NormalizeClientLayer, NormalizeLayer};

/// The key the gateway adds to every upstream call (configured with
/// `secret`), echoed by the upstream like the client's own.
const UPSTREAM_KEY: &str = "gw-upstream-7Hq2Lx9Rv4Tb8Nc3";

/// The credentials clients send: an OpenAI-style bearer key, an
/// Anthropic-style `x-api-key`, an Azure `api-key` (hex, no known shape), a
/// JSON Web Token, and a base64 key with `/` and `+` (escaped as `\/` by
/// some JSON encoders, as `%2F`/`%2B` in URLs).
const CREDENTIALS: [(&str, &str); 5] = [
    ("authorization", "Bearer sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6"),
    ("x-api-key", "sk-ant-api03-Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1Gg0Ff9Dd8Ss7Aa6-Qq5Ww4AA"),
    ("api-key", "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99"),
    ("authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLWJ5dGVzLTEyMw"),
    ("x-api-key", "k/Xy+Zt9/Qm3+Lp8Vn2=="),
];

/// Every way the upstream echoes what it was sent.
const ECHOES: [&str; 16] = [
    "canonical",
    "canonical-escaped",
    "equals",
    "newline",
    "commas",
    "json-string",
    "quotes",
    "colon",
    "percent",
    "html",
    "sse",
    "big",
    "error-header",
    "reason",
    "success-header",
    "grpc",
];

// ---------------------------------------------------------------------------
// Finding a credential in what a client received.

/// The forms of a secret that must never come back: the value whole and
/// every white-space-separated token of 8 or more characters, in any case.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.trim().to_lowercase()];
    out.extend(
        secret
            .split_whitespace()
            .filter(|t| t.len() >= 8)
            .map(str::to_lowercase),
    );
    out
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let escaped = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, escaped) {
            (b'%', Some(v)) => {
                out.push(v);
                rest = &tail[2..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_strings(i, out)),
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push_str(k);
            out.push('\n');
            json_strings(v, out);
        }),
        _ => {}
    }
}

/// Every reading of `bytes` a client could make: as they are,
/// percent-decoded, and the strings of JSON in them (the whole text, or
/// every SSE `data:` line) with their escapes decoded.
fn readings(bytes: &[u8]) -> Vec<String> {
    let raw = String::from_utf8_lossy(bytes).into_owned();
    let mut out = vec![percent_decode(&raw), raw.clone()];
    let mut strings = String::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        json_strings(&v, &mut strings);
    }
    for line in raw.lines() {
        if let Some(data) = line.strip_prefix("data:") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) {
                json_strings(&v, &mut strings);
            }
        }
    }
    out.push(percent_decode(&strings));
    out.push(strings);
    out
}

/// Panics when any form of any secret is in any reading of `bytes`.
fn assert_clean(what: &str, bytes: &[u8], secrets: &[&str]) {
    for reading in readings(bytes) {
        let reading = reading.to_lowercase();
        for secret in secrets {
            for form in forms(secret) {
                assert!(
                    !reading.contains(&form),
                    "{what}: {form:?} came back in {reading:?}"
                );
            }
        }
    }
}

/// Everything in a response head a client sees: the reason phrase and every
/// header.
fn assert_clean_head(what: &str, parts: &http::response::Parts, secrets: &[&str]) {
    if let Some(reason) = parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        assert_clean(&format!("{what}: reason"), reason.as_bytes(), secrets);
    }
    for (name, value) in &parts.headers {
        assert_clean(&format!("{what}: {name}"), value.as_bytes(), secrets);
    }
}

// ---------------------------------------------------------------------------
// The careless upstream.

/// The credential values a request carried (the gateway's key included).
fn seen(req: &AxumRequest) -> Vec<String> {
    ["authorization", "x-api-key", "api-key", "x-upstream-key"]
        .iter()
        .flat_map(|name| req.headers().get_all(*name))
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn respond(status: u16, content_type: &str, body: impl Into<Body>) -> AxumResponse {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn envelope(message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": "authentication_error", "param": null, "code": "invalid_api_key"}}).to_string()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Answers `/echo/{how}` with every credential of the request in it.
fn echo(how: &str, vals: &[String]) -> AxumResponse {
    let all = |f: &dyn Fn(&str) -> String| vals.iter().map(|v| f(v)).collect::<Vec<_>>().join(" ");
    let json = "application/json";
    match how {
        "canonical" => respond(401, json, envelope(&format!("Incorrect API key provided: {}.", vals.join(", ")))),
        "canonical-escaped" => {
            let body = envelope(&format!("Incorrect API key provided: {}", vals.join(" ")))
                .replace('/', "\\/")
                .replace('-', "\\u002d");
            respond(401, json, body)
        }
        "equals" => respond(401, "text/plain", all(&|v| format!("invalid api_key={v}&retry"))),
        "newline" => respond(401, "text/plain", format!("invalid key\n{}\n", vals.join("\n"))),
        "commas" => respond(403, json, serde_json::json!({"error": {"message": format!("keys: a,{},b", vals.join(","))}}).to_string()),
        "json-string" => respond(400, json, serde_json::json!({
            "error": {"message": vals.join(" "), "param": vals[0], "code": vals[0], "type": "invalid_request_error"},
            "echo": {"headers": vals},
        }).to_string()),
        "quotes" => respond(401, "text/plain", all(&|v| format!("'{v}' \"{v}\""))),
        "colon" => respond(401, "text/plain", all(&|v| format!("key:{v};"))),
        "percent" => respond(400, "text/plain", all(&|v| format!("/v1?key={}", percent_encode(v)))),
        "html" => respond(502, "text/html", format!("<html><body>{}</body></html>", vals.join("<br>"))),
        "sse" => respond(500, "text/event-stream", format!("data: {}\n\n", serde_json::json!({"error": {"message": vals.join(" ")}}))),
        "big" => {
            // Credentials at the start, across the 8 KiB reading cap, and after it.
            let mut body = format!("{{\"error\":{{\"message\":\"{}", vals.join(" "));
            body.push_str(&"x".repeat(8 * 1024 - body.len() - 5));
            body.push_str(&vals.join(" "));
            body.push_str(&"y".repeat(4096));
            body.push_str("\"}}");
            respond(500, json, body)
        }
        "error-header" => {
            let mut res = respond(401, json, "{}");
            for v in vals {
                let h = res.headers_mut();
                h.append("x-echo", HeaderValue::from_str(&format!("key={v}, ok")).unwrap());
                h.append("www-authenticate", HeaderValue::from_str(&format!("Bearer error=\"invalid_token\", key=\"{v}\"")).unwrap());
                h.append("x-request-id", HeaderValue::from_str(&format!("req-{v}")).unwrap());
            }
            res
        }
        "reason" => {
            let mut res = respond(401, json, envelope("bad key"));
            let reason = format!("Bad Key {}", vals.join(" "));
            res.extensions_mut().insert(hyper::ext::ReasonPhrase::try_from(reason.into_bytes()).unwrap());
            res
        }
        "success-header" => {
            let mut res = respond(200, json, "{\"ok\":true}");
            for v in vals {
                let h = res.headers_mut();
                h.append("x-echo", HeaderValue::from_str(&format!("seen={v};")).unwrap());
                h.append("set-cookie", HeaderValue::from_str(&format!("k={}; Path=/", percent_encode(v))).unwrap());
            }
            let mut reasoned = res;
            let reason = format!("OK {}", vals.join(" "));
            reasoned.extensions_mut().insert(hyper::ext::ReasonPhrase::try_from(reason.into_bytes()).unwrap());
            reasoned
        }
        "grpc" => {
            let message = percent_encode(&format!("invalid key {}", vals.join(" ")));
            Response::builder()
                .status(200)
                .header(CONTENT_TYPE, "application/grpc")
                .header("grpc-status", "16")
                .header("grpc-message", message)
                .body(Body::empty())
                .unwrap()
        }
        "success-body" => respond(200, "application/octet-stream", success_body(vals)),
        "sse-late" => {
            let frames = sse_late(vals).into_iter().map(Ok::<_, Infallible>);
            respond(200, "text/event-stream", Body::from_stream(futures_util::stream::iter(frames)))
        }
        other => panic!("no echo {other}"),
    }
}

/// A success body with the credentials in it and bytes that are not UTF-8.
fn success_body(vals: &[String]) -> Vec<u8> {
    let mut body = b"\xff\xfe{\"key\":\"".to_vec();
    body.extend_from_slice(vals.join(",").as_bytes());
    body.extend_from_slice(b"\"}\x00");
    body
}

/// The data events a streaming success starts with: passed byte for byte,
/// the word `error` in one of them included.
const DATA_EVENTS: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"an error\"}}]}\n\n",
    ": keep-alive\r\n\r\n",
    "id: 2\ndata: {\"choices\":[{\"delta\":{\"content\":\"sk-not-masked-here\"}}]}\n\n",
);

/// A 200 event stream that fails late: data events, then two error events
/// with the credentials in them (the second in Anthropic's form with JSON
/// escapes, split across frames), then `[DONE]`.
fn sse_late(vals: &[String]) -> Vec<Bytes> {
    let first = format!(
        "event: error\ndata: {}\n\n",
        envelope(&format!("Incorrect API key provided: {}", vals.join(", ")))
    );
    let escaped = serde_json::json!({"type": "error", "error": {"type": "authentication_error", "message": format!("bad key {}", vals.join(" "))}})
        .to_string()
        .replace('/', "\\/")
        .replace('-', "\\u002d");
    let second = format!("event: error\r\ndata: {escaped}\r\n\r\n");
    let (a, b) = second.split_at(second.len() / 2);
    [DATA_EVENTS, &first, a, b, "data: [DONE]\n\n"]
        .into_iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

fn upstream() -> Router {
    Router::new().fallback(|req: AxumRequest| async move {
        let how = req.uri().path().trim_start_matches("/echo/").to_owned();
        echo(&how, &seen(&req))
    })
}

/// A gateway on 127.0.0.1: adds its own key, forwards to `upstream`, and
/// normalizes with the key configured as a secret.
async fn gateway(upstream: SocketAddr) -> SocketAddr {
    let client = support::client();
    let forward = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            parts.uri = format!("http://{upstream}{}", parts.uri.path()).parse()?;
            parts.headers.remove(HOST);
            parts
                .headers
                .insert("x-upstream-key", HeaderValue::from_static(UPSTREAM_KEY));
            let res = client
                .request(Request::from_parts(parts, Full::new(body)))
                .await?;
            Ok::<_, BoxError>(res)
        }
    });
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new().secret(UPSTREAM_KEY))
        .service(forward);
    serve(svc).await
}

fn request(addr: SocketAddr, how: &str, credential: (&str, &str)) -> Request<Full<Bytes>> {
    let content_type = if how == "grpc" {
        "application/grpc"
    } else {
        "application/json"
    };
    Request::post(format!("http://{addr}/echo/{how}"))
        .header(credential.0, credential.1)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

// ---------------------------------------------------------------------------
// Server side, through a gateway.

// ---------------------------------------------------------------------------
// Server side, failures from every origin (in process).

type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

/// A service whose every path fails in its own way, with `secret` in the
/// failure.
async fn failing(req: Request<Body>) -> Result<Response<Body>, BoxError> {
    let secret = req.headers()["api-key"].to_str().unwrap().to_owned();
    let sse = |frames: Frames| {
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .body(Body::new(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
            .unwrap()
    };
    match req.uri().path() {
        "/rendered" => Ok(ApiError::new(ErrorKind::Authentication)
            .with_message(format!("bad key {secret}"))
            .to_response()),
        "/error" => Err(ApiError::new(ErrorKind::Authentication)
            .with_message(format!("bad key {secret}"))
            .with_param(secret.clone())
            .into()),
        "/unknown" => Err(std::io::Error::other(format!("db said {secret}")).into()),
        "/panic" => panic!("handler saw {secret}"),
        "/stream" => Ok(sse(vec![
            Ok(Frame::data(Bytes::from_static(b"data: {\"n\":1}\n\n"))),
            Err(ApiError::new(ErrorKind::Upstream)
                .with_message(format!("upstream reset for {secret}"))
                .into()),
        ])),
        "/grpc" => {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("16"));
            let message = format!("invalid key {secret}").replace(' ', "%20");
            trailers.insert("grpc-message", HeaderValue::from_str(&message).unwrap());
            let frames: Frames = vec![
                Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(Frame::trailers(trailers)),
            ];
            Ok(Response::builder()
                .header(CONTENT_TYPE, "application/grpc")
                .body(Body::new(StreamBody::new(futures_util::stream::iter(
                    frames,
                ))))
                .unwrap())
        }
        other => panic!("no path {other}"),
    }
}

// ---------------------------------------------------------------------------
// Client side.

// ---------------------------------------------------------------------------
// Any placement.

fn placement() -> impl Strategy<Value = (String, String, usize, u16, bool)> {
    (
        "[ -~\n\t]{0,60}",
        "[ -~\n\t]{0,60}",
        0..CREDENTIALS.len(),
        400u16..600,
        any::<bool>(),
    )
}

/// The secret as an upstream may write it in a body: as is, in a JSON
/// string (escapes of `/` and `-` optional), percent-encoded, or in upper
/// case.
fn written(secret: &str, form: u8) -> String {
    match form % 5 {
        0 => secret.to_owned(),
        1 => serde_json::to_string(secret).unwrap(),
        2 => serde_json::to_string(secret)
            .unwrap()
            .replace('/', "\\/")
            .replace('-', "\\u002d"),
        3 => percent_encode(secret),
        _ => secret.to_uppercase(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_secret_anywhere_in_an_error_body_never_leaks(
        (before, after, which, status, json) in placement(),
        form in any::<u8>(),
    ) {
        let (name, secret) = CREDENTIALS[which];
        let body = if json {
            format!("{{\"error\":{{\"message\":{},\"note\":\"{}\"}}}}",
                serde_json::to_string(&format!("{before}{}{after}", written(secret, form))).unwrap(),
                written(secret, form).replace('"', ""))
        } else {
            format!("{before}{}{after}", written(secret, form))
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (parts, bytes) = rt.block_on(async {
            let body = body.clone();
            let svc = ServiceBuilder::new().layer(NormalizeLayer::new()).service_fn(move |_req: Request<Body>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(Response::builder().status(status).body(Body::from(body)).unwrap())
                }
            });
            let req = Request::get("/").header(name, secret).body(Body::empty()).unwrap();
            let (parts, body) = svc.oneshot(req).await.unwrap().into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        });
        assert_clean_head("head", &parts, &[secret]);
        assert_clean("body", &bytes, &[secret]);
        if let Some(err) = parts.extensions.get::<ApiError>() {
            if let Some(up) = err.upstream_body() {
                assert_clean("upstream body", up, &[secret]);
            }
        }
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
    }
}

mod masking {
    mod events;
    mod origins;
    mod wire;
}
