//! Request checks before the upstream: invalid OpenAI-shaped requests, and
//! prompts over a model's context window, answered at once.
//!
//! An upstream call spent on a request the upstream will refuse costs time,
//! a rate-limit slot and, behind a fallback, possibly one call per model.
//! [`CheckLayer`] answers those requests itself, before its inner service is
//! called, with the canonical envelope ([`ApiError`](crate::ApiError)).
//!
//! # What is checked
//!
//! A `POST` whose path ends in `/chat/completions`, `/completions` or
//! `/embeddings` has its body read (up to [`max_body`](CheckLayer::max_body))
//! and checked; the first failing row, in this order, is the answer:
//!
//! | check | status | `code` | `param` |
//! |---|---|---|---|
//! | the body is larger than the cap | 413 | `request_too_large` | — |
//! | the body is not JSON, or not an object | 400 | `invalid_json` | — |
//! | `model` missing (or `null`) | 400 | `missing_required_field` | `model` |
//! | `model` not a non-empty string | 400 | `invalid_value` | `model` |
//! | chat: `messages` missing (or `null`) | 400 | `missing_required_field` | `messages` |
//! | chat: `messages` not an array, or empty | 400 | `invalid_value` | `messages` |
//! | chat: a message that is not an object, or whose `role` is not `system`, `developer`, `user`, `assistant`, `tool` or `function` | 400 | `invalid_value` | `messages[I].role` (`I` the first such message) |
//! | `temperature` not a number in [0, 2]; `top_p` not in [0, 1]; `presence_penalty`, `frequency_penalty` not in [-2, 2]; `n` not an integer in [1, 128]; `max_tokens`, `max_completion_tokens` not an integer ≥ 1; `stream` not a boolean | 400 | `invalid_value` | the field |
//! | the prompt plus the requested output over the model's context window | 400 | `context_length_exceeded` | `messages` (`prompt`, `input`) |
//!
//! The fields are checked where they apply: chat completions take all of
//! them; legacy completions take the sampling fields and `max_tokens`, which
//! may be 0 there (`echo` scores a prompt without output), and count
//! `prompt`; embeddings take `model` and count `input`. A field set to
//! `null` counts as absent, a whole number written `2.0` is an integer, and
//! of a key given twice the last value counts, as the upstreams' JSON
//! readers do. Azure OpenAI's `/openai/deployments/NAME/…` paths name the
//! model in the path, so `model` may be left out there.
//!
//! Anything else passes untouched: unknown fields, vendor extensions,
//! `tools`, `response_format`, `stream_options`, values the rules above do
//! not cover. The inner service receives the body the client sent, byte for
//! byte ([`CheckBody`]).
//!
//! # What is not read
//!
//! Other methods and paths go through without their body being touched: the
//! cost is a comparison of the path. So do bodies that are not JSON by their
//! `content-type` (`text/plain`, a form, …; a body without a `content-type`
//! is checked) and compressed bodies (a `content-encoding` other than
//! `identity`): the upstream decides about those.
//!
//! # The body
//!
//! A checked body is read once, into one `Bytes` (a body that arrives in
//! one frame is not copied at all; one in several frames is joined once),
//! and the inner service gets a body made of those same bytes, followed by
//! the original trailers. A body whose `content-length` is over the cap is
//! answered 413 without reading it; one that turns out larger while read is
//! answered 413 as soon as the cap is crossed, having read at most the cap
//! and the frame that crossed it. A body that fails while read is answered
//! with the error it failed with when the crate knows it (a timeout is 504),
//! else 400. Reading is not timed by this layer: inside a
//! [`TimeoutLayer`](crate::TimeoutLayer), the call's total timeout covers a
//! body that never ends.
//!
//! # Context windows
//!
//! [`CheckLayer::context_window`] gives a model (by the `model` name in the
//! body) a window in tokens and a [`Tokenizer`]. The prompt's tokens plus
//! the requested `max_tokens` (or `max_completion_tokens`) must fit:
//!
//! - with [`Tokenizer::Estimate`] (the default) the prompt is counted as a
//!   lower bound that never exceeds the real count of the GPT encodings, so
//!   a request is refused only when even that bound is over: a request the
//!   upstream would take is never refused;
//! - with an exact encoding (`o200k_base`, `cl100k_base`; feature
//!   `tokenizer`) the count is the encoding's, with the chat format's
//!   framing. The text is encoded only when the cheap bounds cannot decide
//!   (no token is shorter than a byte, so a body whose text bytes fit is
//!   sent without encoding anything).
//!
//! Whatever was learnt goes into the request's extensions as
//! [`PromptTokens`], for every checked request that is sent on: a fallback
//! layer further in can skip a model whose window is too small
//! ([`PromptTokens::fits`]) without reading the body again.
//!
//! # Errors and where the layer goes
//!
//! The layer's error type is [`ApiError`](crate::ApiError), as for the
//! crate's other layers: in a client stack the caller gets
//! `Err(ApiError)`; in a server stack
//! [`NormalizeLayer`](crate::NormalizeLayer) outside it renders the
//! envelope (status, `content-type: application/json`, `x-request-id`,
//! `x-should-retry: false`). Put it outside the retry layer and any
//! fallback: a refused request is never sent, retried or moved to another
//! model.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_http_resilience::check::{CheckBody, CheckLayer, PromptTokens};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // An upstream that echoes the body it receives.
//! let upstream = service_fn(|req: Request<CheckBody<Full<Bytes>>>| async move {
//!     let tokens = req.extensions().get::<PromptTokens>().copied();
//!     let body = req.into_body().collect().await?.to_bytes();
//!     Ok::<_, Infallible>((tokens, body))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(CheckLayer::new().context_window("small-model", 1000))
//!     .service(upstream);
//!
//! let post = |body: &'static str| {
//!     Request::post("/v1/chat/completions")
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from_static(body.as_bytes())))
//!         .unwrap()
//! };
//!
//! // A role that does not exist: refused, the upstream never called.
//! let err = svc
//!     .clone()
//!     .oneshot(post(r#"{"model":"m","messages":[{"role":"robot","content":"hi"}]}"#))
//!     .await
//!     .unwrap_err();
//! assert_eq!(err.status(), 400);
//! assert_eq!(err.code(), "invalid_value");
//! assert_eq!(err.param(), Some("messages[0].role"));
//!
//! // A valid request with a vendor field: sent as it came.
//! let ok = r#"{"model":"small-model","messages":[{"role":"user","content":"Hello, world!"}],"x_vendor":1}"#;
//! let (tokens, echoed) = svc.oneshot(post(ok)).await.unwrap();
//! assert_eq!(echoed, ok.as_bytes());
//! assert_eq!(tokens.unwrap().estimate(), 4);
//! # }
//! ```

mod body;
mod config;
mod count;
mod endpoint;
mod estimate;
pub mod future;
mod issue;
mod layer;
mod messages;
mod prompt;
mod request;
mod scalar;
mod service;
mod shape;
mod tokenizer;
mod tokens;
mod window;

pub use body::CheckBody;
pub use config::DEFAULT_MAX_BODY;
pub use layer::CheckLayer;
pub use service::Check;
pub use tokenizer::{Tokenizer, UnknownTokenizer};
pub use tokens::PromptTokens;
pub use window::ContextWindow;
