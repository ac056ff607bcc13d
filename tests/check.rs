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

mod check {
    mod body;
    mod props;
    mod table;
    #[cfg(feature = "tokenizer")]
    mod tokenizer;
}
