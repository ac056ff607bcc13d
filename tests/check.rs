//! Request checks before the upstream: every refusal of the check table
//! with its exact code and param and no upstream call, valid requests
//! forwarded byte for byte, the body cap, context windows and token counts.
#![cfg(feature = "check")]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::check::{CheckBody, CheckLayer, PromptTokens};
use tower_http_resilience::ApiError;

/// One request as the upstream saw it.
struct Call {
    body: Bytes,
    tokens: Option<PromptTokens>,
    trailers: Option<HeaderMap>,
}

/// What the upstream saw: one entry per call.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Call>>>);

impl Seen {
    fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn last_body(&self) -> Bytes {
        self.0.lock().unwrap().last().expect("a call").body.clone()
    }

    fn last_tokens(&self) -> Option<PromptTokens> {
        self.0.lock().unwrap().last().expect("a call").tokens
    }
}

type Upstream<B> =
    tower::util::BoxCloneService<Request<CheckBody<B>>, Response<Full<Bytes>>, Infallible>;

/// An upstream that records each request's body, prompt tokens and
/// trailers, and answers 200.
fn upstream<B>(seen: &Seen) -> Upstream<B>
where
    B: Body + Send + 'static,
    B::Data: Into<Bytes> + Send,
    B::Error: std::fmt::Debug + Send,
{
    let seen = seen.clone();
    tower::util::BoxCloneService::new(tower::service_fn(move |req: Request<CheckBody<B>>| {
        let seen = seen.clone();
        async move {
            let tokens = req.extensions().get::<PromptTokens>().copied();
            let collected = req.into_body().collect().await.expect("body completes");
            let trailers = collected.trailers().cloned();
            let body = collected.to_bytes();
            seen.0.lock().unwrap().push(Call {
                body,
                tokens,
                trailers,
            });
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    }))
}

fn post(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

async fn call(layer: &CheckLayer, req: Request<Full<Bytes>>) -> (Result<(), ApiError>, Seen) {
    let seen = Seen::default();
    let svc = layer.layer(upstream(&seen));
    let res = svc.oneshot(req).await.map(drop);
    (res, seen)
}

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";
const EMBEDDINGS: &str = "/v1/embeddings";
const USER: &str = r#"[{"role":"user","content":"hi"}]"#;

fn chat(extra: &str) -> String {
    format!(r#"{{"model":"gpt-4o","messages":{USER}{extra}}}"#)
}

/// A prompt of about 6 KB of English prose (the fixture's `long_english`).
fn long_prose() -> String {
    let v: serde_json::Value = serde_json::from_str(include_str!("fixtures/prompts.json")).unwrap();
    v["prompts"][3]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_row_of_the_table_is_refused_with_its_code_and_param() {
    let long = serde_json::to_string(&long_prose()).unwrap();
    let long_chat =
        format!(r#"{{"model":"small","messages":[{{"role":"user","content":{long}}}]}}"#);
    let long_completion = format!(r#"{{"model":"small","prompt":["short",{long}]}}"#);
    let long_input = format!(r#"{{"model":"small","input":{long}}}"#);
    let msgs = |m: &str| format!(r#"{{"model":"gpt-4o","messages":{m}}}"#);
    #[rustfmt::skip]
    let rows: Vec<(&str, String, &str, Option<String>)> = vec![
        (CHAT, "{\"model\":".into(), "invalid_json", None),
        (CHAT, "[1,2]".into(), "invalid_json", None),
        (CHAT, "\"text\"".into(), "invalid_json", None),
        (CHAT, "null".into(), "invalid_json", None),
        (CHAT, "".into(), "invalid_json", None),
        (CHAT, format!("{} x", chat("")), "invalid_json", None),
        (CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\u{0}\"}]}".into(), "invalid_json", None),
        (CHAT, format!(r#"{{"messages":{USER}}}"#), "missing_required_field", Some("model".into())),
        (CHAT, format!(r#"{{"model":null,"messages":{USER}}}"#), "missing_required_field", Some("model".into())),
        (CHAT, format!(r#"{{"model":"","messages":{USER}}}"#), "invalid_value", Some("model".into())),
        (CHAT, format!(r#"{{"model":5,"messages":{USER}}}"#), "invalid_value", Some("model".into())),
        (CHAT, format!(r#"{{"model":["gpt-4o"],"messages":{USER}}}"#), "invalid_value", Some("model".into())),
        (CHAT, r#"{"model":"gpt-4o"}"#.into(), "missing_required_field", Some("messages".into())),
        (CHAT, msgs("null"), "missing_required_field", Some("messages".into())),
        (CHAT, msgs("\"hi\""), "invalid_value", Some("messages".into())),
        (CHAT, msgs("{}"), "invalid_value", Some("messages".into())),
        (CHAT, msgs("[]"), "invalid_value", Some("messages".into())),
        (CHAT, msgs(r#"[{"role":"robot","content":"hi"}]"#), "invalid_value", Some("messages[0].role".into())),
        (CHAT, msgs(r#"[{"role":"user","content":"hi"},"hi"]"#), "invalid_value", Some("messages[1].role".into())),
        (CHAT, msgs(r#"[{"role":"user"},{"role":"system"},{"content":"no role"}]"#), "invalid_value", Some("messages[2].role".into())),
        (CHAT, msgs(r#"[{"role":"user"},{"role":5},{"role":"nope"}]"#), "invalid_value", Some("messages[1].role".into())),
        (CHAT, msgs(r#"[{"role":"User","content":"hi"}]"#), "invalid_value", Some("messages[0].role".into())),
        (CHAT, msgs(r#"[{"role":null}]"#), "invalid_value", Some("messages[0].role".into())),
        (CHAT, chat(r#","temperature":-0.1"#), "invalid_value", Some("temperature".into())),
        (CHAT, chat(r#","temperature":2.0001"#), "invalid_value", Some("temperature".into())),
        (CHAT, chat(r#","temperature":"1""#), "invalid_value", Some("temperature".into())),
        (CHAT, chat(r#","top_p":1.5"#), "invalid_value", Some("top_p".into())),
        (CHAT, chat(r#","top_p":-0.1"#), "invalid_value", Some("top_p".into())),
        (CHAT, chat(r#","presence_penalty":2.5"#), "invalid_value", Some("presence_penalty".into())),
        (CHAT, chat(r#","presence_penalty":true"#), "invalid_value", Some("presence_penalty".into())),
        (CHAT, chat(r#","frequency_penalty":-2.01"#), "invalid_value", Some("frequency_penalty".into())),
        (CHAT, chat(r#","n":0"#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","n":129"#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","n":1.5"#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","n":"2""#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","max_tokens":0"#), "invalid_value", Some("max_tokens".into())),
        (CHAT, chat(r#","max_tokens":-1"#), "invalid_value", Some("max_tokens".into())),
        (CHAT, chat(r#","max_tokens":10.5"#), "invalid_value", Some("max_tokens".into())),
        (CHAT, chat(r#","max_completion_tokens":0"#), "invalid_value", Some("max_completion_tokens".into())),
        (CHAT, chat(r#","max_completion_tokens":[1]"#), "invalid_value", Some("max_completion_tokens".into())),
        (CHAT, chat(r#","stream":"true""#), "invalid_value", Some("stream".into())),
        (CHAT, chat(r#","stream":1"#), "invalid_value", Some("stream".into())),
        (CHAT, long_chat, "context_length_exceeded", Some("messages".into())),
        (COMPLETIONS, r#"{"prompt":"hi"}"#.into(), "missing_required_field", Some("model".into())),
        (COMPLETIONS, r#"{"model":"m","temperature":3}"#.into(), "invalid_value", Some("temperature".into())),
        (COMPLETIONS, r#"{"model":"m","n":0}"#.into(), "invalid_value", Some("n".into())),
        (COMPLETIONS, r#"{"model":"m","max_tokens":-1}"#.into(), "invalid_value", Some("max_tokens".into())),
        (COMPLETIONS, r#"{"model":"m","stream":"yes"}"#.into(), "invalid_value", Some("stream".into())),
        (COMPLETIONS, long_completion, "context_length_exceeded", Some("prompt".into())),
        (EMBEDDINGS, r#"{"input":"hi"}"#.into(), "missing_required_field", Some("model".into())),
        (EMBEDDINGS, r#"{"model":"","input":"hi"}"#.into(), "invalid_value", Some("model".into())),
        (EMBEDDINGS, "{oops".into(), "invalid_json", None),
        (EMBEDDINGS, long_input, "context_length_exceeded", Some("input".into())),
    ];
    let layer = CheckLayer::new().context_window("small", 1000);
    for (path, body, code, param) in rows {
        let (res, seen) = call(&layer, post(path, &body)).await;
        let err = res.expect_err(&body);
        assert_eq!(err.status(), 400, "{body}");
        assert_eq!(err.error_type(), "invalid_request_error", "{body}");
        assert_eq!(err.code(), code, "{body}");
        assert_eq!(err.param(), param.as_deref(), "{body}");
        assert!(!err.is_retryable(), "{body}");
        assert_eq!(seen.calls(), 0, "no upstream call for {body}");
    }
}

#[tokio::test]
async fn the_first_failing_row_is_the_answer() {
    // `model` comes before `messages`, which comes before the ranged fields,
    // whatever the order of the keys in the body.
    let body = r#"{"temperature":9,"messages":[],"model":""}"#;
    let (res, _) = call(&CheckLayer::new(), post(CHAT, body)).await;
    assert_eq!(res.unwrap_err().param(), Some("model"));
    let body = r#"{"n":0,"temperature":9,"model":"m","messages":[{"role":"user"}]}"#;
    let (res, _) = call(&CheckLayer::new(), post(CHAT, body)).await;
    assert_eq!(res.unwrap_err().param(), Some("temperature"));
}

#[tokio::test]
async fn valid_requests_reach_the_upstream_byte_for_byte() {
    #[rustfmt::skip]
    let rows: Vec<(&str, &str)> = vec![
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"2+2?"}]}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}]}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"function","name":"f","content":"1"}]}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":2}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":2.0,"top_p":0,"presence_penalty":-2,"frequency_penalty":2,"n":128,"max_tokens":1,"max_completion_tokens":4096,"stream":false}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"auto"}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x_vendor":{"safe_mode":1e400,"deep":[[[[]]]]},"top_k":40,"repetition_penalty":1.1}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":null,"n":null,"max_tokens":null,"stream":null}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"n":2.0}"#),
        (CHAT, "{\n  \"model\" : \"gpt-4o\",\n  \"messages\" : [ { \"role\" : \"system\", \"content\" : \"tab\\there \\\"quoted\\\" \\u00e9\" } ]\n}\n"),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":7,"temperature":0.7}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"us\u0065r","content":"escaped role"}]}"#),
        ("/openai/deployments/prod/chat/completions?api-version=2024-10-21", r#"{"messages":[{"role":"user","content":"hi"}]}"#),
        (COMPLETIONS, r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi","max_tokens":0,"echo":true,"logprobs":0}"#),
        (COMPLETIONS, r#"{"model":"m","prompt":[[1,2,3],[4]],"max_completion_tokens":0}"#),
        (EMBEDDINGS, r#"{"model":"text-embedding-3-small","input":["one","two"],"dimensions":256,"temperature":"ignored here"}"#),
        (EMBEDDINGS, r#"{"model":"text-embedding-3-small","input":[1,2,3],"encoding_format":"float"}"#),
    ];
    let layer = CheckLayer::new();
    for (path, body) in rows {
        let (res, seen) = call(&layer, post(path, body)).await;
        res.unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(seen.calls(), 1, "{body}");
        assert_eq!(seen.last_body(), body.as_bytes(), "byte for byte: {body}");
        assert!(seen.last_tokens().is_some(), "tokens published: {body}");
    }
}

#[tokio::test]
async fn prompt_tokens_are_published_for_the_layers_inside() {
    let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Hello, world!"},{"role":"user","content":"e.g. 1234567"}],"max_tokens":300}"#;
    let (res, seen) = call(&CheckLayer::new(), post(CHAT, body)).await;
    res.unwrap();
    let tokens = seen.last_tokens().unwrap();
    // "Hello" "," " world" "!" and "e" ".g" "." " 123" "456" "7"
    assert_eq!(tokens.estimate(), 4 + 6);
    assert_eq!(tokens.output(), 300);
    assert_eq!(tokens.exact(), None, "no window, no exact count");
    assert!(tokens.fits(310));
    assert!(!tokens.fits(309));
}

#[tokio::test]
async fn with_a_1000_token_window_a_6kb_prompt_is_refused_and_a_200_character_one_sent() {
    let layer = CheckLayer::new().context_window("small", 1000);
    let prose = long_prose();
    assert!(prose.is_ascii() && (6000..6500).contains(&prose.len()));
    let request = |text: &str, extra: &str| {
        let text = serde_json::to_string(text).unwrap();
        format!(r#"{{"model":"small","messages":[{{"role":"user","content":{text}}}]{extra}}}"#)
    };

    let (res, seen) = call(&layer, post(CHAT, &request(&prose, ""))).await;
    let err = res.unwrap_err();
    assert_eq!(err.code(), "context_length_exceeded");
    assert_eq!(err.param(), Some("messages"));
    assert!(err.message().contains("1000 tokens"), "{}", err.message());
    assert_eq!(seen.calls(), 0);

    let short = &prose[..200];
    let (res, seen) = call(&layer, post(CHAT, &request(short, r#","max_tokens":900"#))).await;
    res.unwrap();
    assert_eq!(seen.calls(), 1);
    // The short prompt with a large output does not fit.
    let (res, _) = call(&layer, post(CHAT, &request(short, r#","max_tokens":990"#))).await;
    assert_eq!(res.unwrap_err().code(), "context_length_exceeded");
    // Another model has no window configured: nothing to refuse.
    let other = request(&prose, "").replace("\"small\"", "\"large\"");
    let (res, seen) = call(&layer, post(CHAT, &other)).await;
    res.unwrap();
    assert!(!seen.last_tokens().unwrap().fits(1000));
}

/// A request body in chunks that counts the bytes it handed out.
struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    read: Arc<AtomicUsize>,
    exact: bool,
}

impl Chunks {
    fn new(chunks: Vec<Vec<u8>>) -> (Self, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let body = Chunks {
            chunks: chunks.into_iter().map(Bytes::from).collect(),
            trailers: None,
            read: read.clone(),
            exact: false,
        };
        (body, read)
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            self.read.fetch_add(chunk.len(), Ordering::SeqCst);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn size_hint(&self) -> SizeHint {
        let len: u64 = self.chunks.iter().map(|c| c.len() as u64).sum();
        if self.exact {
            SizeHint::with_exact(len)
        } else {
            SizeHint::default()
        }
    }
}

fn post_chunks(path: &str, body: Chunks) -> Request<Chunks> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_body_in_many_frames_is_joined_once_and_keeps_its_trailers() {
    let body = chat(r#","stream":true"#);
    let parts: Vec<Vec<u8>> = body.as_bytes().chunks(7).map(<[u8]>::to_vec).collect();
    let (mut chunks, read) = Chunks::new(parts);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    chunks.trailers = Some(trailers);
    let seen = Seen::default();
    let svc = CheckLayer::new().layer(upstream::<Chunks>(&seen));
    svc.oneshot(post_chunks(CHAT, chunks)).await.unwrap();
    assert_eq!(read.load(Ordering::SeqCst), body.len(), "read once");
    assert_eq!(seen.last_body(), body.as_bytes());
    let calls = seen.0.lock().unwrap();
    assert_eq!(calls[0].trailers.as_ref().unwrap()["x-checksum"], "abc");
}

#[tokio::test]
async fn requests_that_are_not_checked_are_not_read() {
    let invalid = b"not json at all".to_vec();
    let cases = [
        ("GET", CHAT, Some("application/json"), None),
        ("POST", "/v1/models", Some("application/json"), None),
        (
            "POST",
            "/v1/chat/completions/extra",
            Some("application/json"),
            None,
        ),
        ("POST", CHAT, Some("text/plain"), None),
        ("POST", CHAT, Some("multipart/form-data; boundary=x"), None),
        ("POST", CHAT, Some("application/json"), Some("gzip")),
    ];
    for (method, path, ct, encoding) in cases {
        let (body, read) = Chunks::new(vec![invalid.clone()]);
        let mut req = Request::builder().method(method).uri(path);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        if let Some(enc) = encoding {
            req = req.header("content-encoding", enc);
        }
        let req = req.body(body).unwrap();
        let read_at_call = Arc::new(AtomicUsize::new(usize::MAX));
        let at_call = read_at_call.clone();
        let svc =
            CheckLayer::new().layer(tower::service_fn(move |req: Request<CheckBody<Chunks>>| {
                at_call.store(read.load(Ordering::SeqCst), Ordering::SeqCst);
                assert!(!req.body().was_checked());
                assert!(req.extensions().get::<PromptTokens>().is_none());
                async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, Infallible>(body)
                }
            }));
        let body = svc.oneshot(req).await.unwrap();
        assert_eq!(
            read_at_call.load(Ordering::SeqCst),
            0,
            "{method} {path} {ct:?}: unread"
        );
        assert_eq!(body, &invalid[..]);
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_answered_413_having_read_no_more() {
    let layer = CheckLayer::new().max_body(1024);
    // A declared length over the cap: nothing is read.
    let (mut body, read) = Chunks::new(vec![vec![b' '; 2000]]);
    body.exact = true;
    let seen = Seen::default();
    let err = layer
        .layer(upstream::<Chunks>(&seen))
        .oneshot(post_chunks(CHAT, body))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (413, "request_too_large")
    );
    assert_eq!(err.error_type(), "invalid_request_error");
    assert_eq!(read.load(Ordering::SeqCst), 0);
    // A body that turns out too long: read up to the frame that crossed the
    // cap, and no further.
    let (body, read) = Chunks::new(vec![vec![b' '; 600], vec![b' '; 600], vec![b' '; 600]]);
    let err = layer
        .layer(upstream::<Chunks>(&seen))
        .oneshot(post_chunks(CHAT, body))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 413);
    assert_eq!(read.load(Ordering::SeqCst), 1200);
    assert_eq!(seen.calls(), 0);
    // Exactly the cap is fine.
    let mut exact = chat("").into_bytes();
    exact.resize(1024, b' ');
    let (body, _) = Chunks::new(vec![exact.clone()]);
    layer
        .layer(upstream::<Chunks>(&seen))
        .oneshot(post_chunks(CHAT, body))
        .await
        .unwrap();
    assert_eq!(seen.last_body(), exact);
}

#[tokio::test]
async fn a_refusal_leaves_the_inner_service_uncalled_and_the_next_call_works() {
    let seen = Seen::default();
    let mut svc = CheckLayer::new().layer(upstream::<Full<Bytes>>(&seen));
    svc.ready().await.unwrap();
    let err = svc.call(post(CHAT, "{}")).await.unwrap_err();
    assert_eq!(err.param(), Some("model"));
    svc.ready().await.unwrap();
    svc.call(post(CHAT, &chat(""))).await.unwrap();
    assert_eq!(seen.calls(), 1);
}

#[tokio::test]
async fn a_server_answers_the_envelope_on_the_wire_and_echoes_valid_bodies() {
    use axum::routing::post as route_post;
    use tower::ServiceBuilder;
    use tower_http_resilience::NormalizeLayer;

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new()
        .route(
            CHAT,
            route_post(move |body: Bytes| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { body }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(NormalizeLayer::new())
                .layer(CheckLayer::new().context_window("small", 1000)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let send = |body: String| {
        let req = Request::post(format!("http://{addr}{CHAT}"))
            .header("content-type", "application/json")
            .header("x-request-id", "req-42")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let client = client.clone();
        async move {
            let res = client.request(req).await.unwrap();
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    let bad = r#"{"model":"gpt-4o","messages":[{"role":"user"},{"role":"wizard"}]}"#;
    let (parts, body) = send(bad.into()).await;
    assert_eq!(parts.status, 400);
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["x-request-id"], "req-42");
    assert_eq!(parts.headers["x-should-retry"], "false");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_value");
    assert_eq!(v["error"]["param"], "messages[1].role");

    let long = serde_json::to_string(&long_prose()).unwrap();
    let too_long =
        format!(r#"{{"model":"small","messages":[{{"role":"user","content":{long}}}]}}"#);
    let (parts, body) = send(too_long).await;
    assert_eq!(parts.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "messages");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no call reached the handler"
    );

    let good = chat(r#","stream_options":{"include_usage":true},"vendor":"x""#);
    let (parts, body) = send(good.clone()).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, good.as_bytes());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The check table, written again over `serde_json::Value`: the first
/// issue of a chat request as (code, param), or `None` when it is valid.
fn oracle(v: &serde_json::Value) -> Option<(&'static str, Option<String>)> {
    use serde_json::Value;
    let Value::Object(o) = v else {
        return Some(("invalid_json", None));
    };
    match o.get("model") {
        None | Some(Value::Null) => return Some(("missing_required_field", Some("model".into()))),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Some(("invalid_value", Some("model".into()))),
    }
    match o.get("messages") {
        None | Some(Value::Null) => {
            return Some(("missing_required_field", Some("messages".into())))
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            let roles = [
                "system",
                "developer",
                "user",
                "assistant",
                "tool",
                "function",
            ];
            for (i, m) in a.iter().enumerate() {
                let ok = m
                    .get("role")
                    .and_then(Value::as_str)
                    .is_some_and(|r| roles.contains(&r));
                if !m.is_object() || !ok {
                    return Some(("invalid_value", Some(format!("messages[{i}].role"))));
                }
            }
        }
        Some(_) => return Some(("invalid_value", Some("messages".into()))),
    }
    let number = |v: &Value, lo: f64, hi: f64| v.as_f64().is_some_and(|n| n >= lo && n <= hi);
    let whole = |v: &Value, lo: f64, hi: f64| {
        v.as_f64()
            .is_some_and(|n| n.fract() == 0.0 && n >= lo && n <= hi)
    };
    type Rule<'r> = (&'r str, &'r dyn Fn(&Value) -> bool);
    let rules: [Rule<'_>; 8] = [
        ("temperature", &|v| number(v, 0.0, 2.0)),
        ("top_p", &|v| number(v, 0.0, 1.0)),
        ("presence_penalty", &|v| number(v, -2.0, 2.0)),
        ("frequency_penalty", &|v| number(v, -2.0, 2.0)),
        ("n", &|v| whole(v, 1.0, 128.0)),
        ("max_tokens", &|v| whole(v, 1.0, f64::INFINITY)),
        ("max_completion_tokens", &|v| whole(v, 1.0, f64::INFINITY)),
        ("stream", &|v| v.is_boolean()),
    ];
    for (name, ok) in rules {
        match o.get(name) {
            None | Some(Value::Null) => {}
            Some(v) if ok(v) => {}
            Some(_) => return Some(("invalid_value", Some(name.into()))),
        }
    }
    None
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-300i64..300).prop_map(|n| json!(n)),
        prop::sample::select(vec![
            -2.5, -2.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.01, 128.0, 1e20
        ])
        .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "system",
            "developer",
            "assistant",
            "tool",
            "function",
            "bot",
            ""
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["role", "content", "name", "type", "text", "x"]),
                inner,
                0..4
            )
            .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ]
    })
}

/// A value for a ranged field: a number near the edges of its range
/// (inside and out), a whole number written as a float, `null`, or any
/// JSON value.
fn ranged(edges: &'static [f64]) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        6 => prop::sample::select(edges).prop_map(|f| json!(f)),
        2 => prop::sample::select(edges)
            .prop_filter("whole", |f| f.fract() == 0.0 && f.abs() < 1e15)
            .prop_map(|f| json!(f as i64)),
        1 => Just(serde_json::Value::Null),
        1 => json_value(),
    ]
}

/// A chat-shaped object, mostly valid: each known key present or not,
/// with values at the edges of the table's ranges, messages whose roles
/// are mostly valid, and unknown keys with any value.
fn chat_object() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    const ROLES: &[&str] = &[
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ];
    let role = prop_oneof![
        9 => prop::sample::select(ROLES).prop_map(|r| json!(r)),
        1 => json_leaf(),
    ];
    let message = prop_oneof![
        9 => (role, "\\PC{0,40}").prop_map(|(role, content)| json!({"role": role, "content": content})),
        1 => json_value(),
    ];
    let messages = prop_oneof![
        9 => prop::collection::vec(message, 1..4).prop_map(serde_json::Value::Array),
        1 => json_value(),
    ];
    let model = prop_oneof![9 => Just(json!("gpt-4o")), 1 => json_leaf()];
    let fields = (
        ranged(&[-0.001, 0.0, 1.0, 2.0, 2.001]),
        ranged(&[-0.001, 0.0, 0.5, 1.0, 1.001]),
        ranged(&[-2.001, -2.0, 0.0, 2.0, 2.001]),
        ranged(&[-2.001, -2.0, 0.0, 2.0, 2.001]),
        ranged(&[0.0, 1.0, 1.5, 128.0, 129.0]),
        ranged(&[-1.0, 0.0, 1.0, 1.5, 1e18]),
        ranged(&[-1.0, 0.0, 1.0, 1.5, 1e18]),
        prop_oneof![4 => any::<bool>().prop_map(|b| json!(b)), 1 => json_value()],
    );
    let names = [
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stream",
    ];
    (
        prop::collection::vec(prop::bool::weighted(0.9), 2),
        prop::collection::vec(prop::bool::weighted(0.3), names.len()),
        model,
        messages,
        fields,
        prop::collection::vec(("[a-z_]{1,12}", json_value()), 0..3),
    )
        .prop_map(move |(required, present, model, messages, f, unknown)| {
            let mut o = serde_json::Map::new();
            for (k, v) in unknown {
                o.insert(k, v);
            }
            if required[0] {
                o.insert("model".into(), model);
            }
            if required[1] {
                o.insert("messages".into(), messages);
            }
            let values = [f.0, f.1, f.2, f.3, f.4, f.5, f.6, f.7];
            for ((name, value), on) in names.iter().zip(values).zip(present) {
                if on {
                    o.insert((*name).to_owned(), value);
                }
            }
            serde_json::Value::Object(o)
        })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a chat request holds, the layer refuses exactly what the
    /// table refuses, with the table's code and param, and forwards the
    /// rest unchanged, in compact or pretty form.
    #[test]
    fn accepted_objects_are_forwarded_unchanged(v in chat_object(), pretty in any::<bool>()) {
        let body = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
        let (res, seen) = block_on(call(&CheckLayer::new(), post(CHAT, &body)));
        match (oracle(&v), res) {
            (None, Ok(())) => {
                prop_assert_eq!(seen.calls(), 1);
                prop_assert_eq!(seen.last_body(), body.as_bytes());
            }
            (Some((code, param)), Err(e)) => {
                prop_assert_eq!(e.code(), code);
                prop_assert_eq!(e.param().map(str::to_owned), param);
                prop_assert_eq!(seen.calls(), 0);
            }
            (expected, got) => prop_assert!(false, "{body}: expected {expected:?}, got {got:?}"),
        }
    }

    /// No body, whatever its bytes and framing, makes the layer panic, and
    /// none is read past the cap (and the frame that crossed it).
    #[test]
    fn no_input_panics_or_is_read_past_the_cap(
        chunks in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                "[\\[\\]{}\":,a-z0-9 ]{0,64}".prop_map(String::into_bytes),
            ],
            0..8,
        ),
        cap in 0usize..300,
        path in prop::sample::select(vec![CHAT, COMPLETIONS, EMBEDDINGS]),
    ) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let largest = chunks.iter().map(Vec::len).max().unwrap_or(0);
        let all = chunks.concat();
        let (body, read) = Chunks::new(chunks);
        let seen = Seen::default();
        let svc = CheckLayer::new()
            .max_body(cap)
            .context_window("m", 5)
            .layer(upstream::<Chunks>(&seen));
        let res = block_on(svc.oneshot(post_chunks(path, body)));
        prop_assert!(read.load(Ordering::SeqCst) <= cap + largest);
        match res {
            Ok(_) => {
                prop_assert!(total <= cap);
                prop_assert_eq!(seen.last_body(), &all[..]);
            }
            Err(e) if total > cap => prop_assert_eq!(e.status(), 413),
            Err(e) => {
                prop_assert_eq!(e.status(), 400);
                prop_assert_eq!(seen.calls(), 0);
            }
        }
    }
}

/// Exact counts and the soundness of the estimate, against the real
/// encodings.
#[cfg(feature = "tokenizer")]
mod tokenizer {
    use super::*;
    use tower_http_resilience::check::{ContextWindow, Tokenizer};

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("fixtures/prompts.json")).unwrap()
    }

    #[test]
    fn counts_equal_the_reference_counts_of_the_fixture() {
        let f = fixture();
        let prompts = f["prompts"].as_array().unwrap();
        let names: Vec<_> = prompts
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["english", "chinese", "code", "long_english"]);
        for p in prompts {
            let text = p["text"].as_str().unwrap();
            for (t, key) in [
                (Tokenizer::O200kBase, "o200k_base"),
                (Tokenizer::Cl100kBase, "cl100k_base"),
            ] {
                let reference = p[key].as_u64().unwrap();
                assert_eq!(t.count(text), reference, "{} with {key}", p["name"]);
                let estimate = Tokenizer::Estimate.count(text);
                assert!(
                    estimate <= reference,
                    "{}: estimate {estimate} > {reference}",
                    p["name"]
                );
            }
        }
    }

    #[test]
    fn counts_equal_published_counts() {
        // Printed in OpenAI's cookbook notebook "How to count tokens with
        // tiktoken" (cl100k_base).
        for p in fixture()["published"].as_array().unwrap() {
            let text = p["text"].as_str().unwrap();
            assert_eq!(
                Tokenizer::Cl100kBase.count(text),
                p["cl100k_base"].as_u64().unwrap(),
                "{text}"
            );
        }
    }

    /// The cookbook's example conversation: 129 prompt tokens counted by
    /// the OpenAI API for gpt-4-0613 (cl100k_base), with `max_tokens: 1`.
    fn cookbook_conversation() -> String {
        serde_json::json!({
            "model": "gpt-4-0613",
            "max_tokens": 1,
            "messages": [
                {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
                {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
                {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
                {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
                {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
                {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
            ]
        })
        .to_string()
    }

    #[tokio::test]
    async fn a_chat_request_counts_as_the_api_bills_it() {
        let body = cookbook_conversation();
        let window = |tokens| ContextWindow::new(tokens, Tokenizer::Cl100kBase);
        let layer = CheckLayer::new().context_window("gpt-4-0613", window(130));
        let (res, seen) = call(&layer, post(CHAT, &body)).await;
        res.unwrap();
        let tokens = seen.last_tokens().unwrap();
        assert_eq!(tokens.exact(), Some((Tokenizer::Cl100kBase, 129)));
        assert_eq!(tokens.output(), 1);
        assert!(tokens.estimate() < 129);

        let layer = CheckLayer::new().context_window("gpt-4-0613", window(129));
        let (res, seen) = call(&layer, post(CHAT, &body)).await;
        let err = res.unwrap_err();
        assert_eq!(err.code(), "context_length_exceeded");
        assert!(
            err.message()
                .contains("needs 130 (129 in the prompt, 1 for the output)"),
            "{}",
            err.message()
        );
        assert_eq!(seen.calls(), 0);
    }

    #[tokio::test]
    async fn an_exact_count_refuses_what_the_estimate_lets_through() {
        let f = fixture();
        let chinese = f["prompts"][1]["text"].as_str().unwrap();
        let o200k = f["prompts"][1]["o200k_base"].as_u64().unwrap();
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": chinese}]})
                .to_string();
        // 3 per message, 1 for the role "user", 3 for the reply.
        let prompt = o200k + 3 + 1 + 3;
        let exact = CheckLayer::new()
            .context_window("m", ContextWindow::new(prompt - 1, Tokenizer::O200kBase));
        let (res, _) = call(&exact, post(CHAT, &body)).await;
        let err = res.unwrap_err();
        assert!(
            err.message().contains(&format!("{prompt} in the prompt")),
            "{}",
            err.message()
        );
        let estimate = CheckLayer::new().context_window("m", prompt - 1);
        let (res, seen) = call(&estimate, post(CHAT, &body)).await;
        res.unwrap();
        assert_eq!(seen.last_tokens().unwrap().exact(), None);
        // A window the text's bytes fit in needs no encoding at all.
        let roomy =
            CheckLayer::new().context_window("m", ContextWindow::new(4096, Tokenizer::O200kBase));
        let (res, seen) = call(&roomy, post(CHAT, &body)).await;
        res.unwrap();
        assert_eq!(seen.last_tokens().unwrap().exact(), None);
    }

    fn tricky_text() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a",
            "Z",
            "'",
            "'s",
            "'ll",
            "''",
            "’",
            " ",
            "  ",
            "\n",
            "\r\n",
            "\t",
            " \n",
            ".",
            ",",
            "!",
            "(",
            ")",
            "/",
            "//",
            "-",
            "_",
            "\"",
            "{",
            "}",
            ";",
            "=",
            "@",
            "~",
            "*",
            "#",
            "...",
            "://",
            "1",
            "23",
            "456",
            "1,000",
            "é",
            "中",
            "文",
            "，",
            "。",
            "—",
            "…",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            "\u{85}",
            "²",
            "①",
            "Ⅻ",
            "١",
            "\u{301}",
            "ि",
            "ก",
            "Ω",
            "я",
            "ア",
            "😀",
            "\u{200b}",
            "\x01",
            "\x0b",
            "\x1c",
            "<|endoftext|>",
            "hello",
            " world",
            "HTTP",
            "don't",
            "__init__",
            "    ",
        ]);
        prop_oneof![
            3 => prop::collection::vec(pieces, 0..80).prop_map(|v| v.concat()),
            1 => "\\PC{0,80}",
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The estimate never exceeds either encoding's count.
        #[test]
        fn the_estimate_is_a_lower_bound(s in tricky_text()) {
            let estimate = Tokenizer::Estimate.count(&s);
            prop_assert!(estimate <= Tokenizer::O200kBase.count(&s), "o200k: {s:?}");
            prop_assert!(estimate <= Tokenizer::Cl100kBase.count(&s), "cl100k: {s:?}");
        }
    }
}
