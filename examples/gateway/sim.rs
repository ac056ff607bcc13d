//! The embedded simulated upstream: an OpenAI-compatible API that fails the
//! way real providers do.
//!
//! The model named in the request picks the behaviour, so a newcomer can
//! provoke each failure on purpose:
//!
//! | model contains | behaviour |
//! |---|---|
//! | `down` | always 503 (a dead upstream: the breaker for this model opens) |
//! | `quota` | 429 `insufficient_quota` (not retried) |
//! | `overloaded` | 529 in Anthropic's dialect |
//! | `stall` | streams two chunks, then goes silent |
//! | `slow` | waits 5 s before the response headers |
//! | `reset` | sends the headers and part of the body, then resets |
//! | `badkey` | 401 whose `code` is the status as a string (`"401"`) and whose `type` says what happened |
//! | anything else | with [`Mix::Daily`], mostly fine, with the daily mix of real providers: 429 with `retry-after-ms` or `x-ratelimit-reset-requests`, bursts of 503, a 500, a 502 HTML page, a reset; with [`Mix::Steady`], fine |
//!
//! `"stream": true` in the body (or `Accept: text/event-stream`) answers with
//! Server-Sent Events: a `chat.completion.chunk` every 20 ms, then `[DONE]`.
//!
//! The gateway starts two of them, the providers `sim` (the daily mix) and
//! `sim-backup` (steady), each answer's `system_fingerprint` saying which,
//! with a route that sends `sim-down` to `sim` first and to `sim-backup`
//! as `gpt-4o-mini` next: a dead model, answered by its backup.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;

/// How a simulated provider answers the models that name no failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mix {
    /// The daily mix of real providers: mostly fine, some 429s, bursts of
    /// 503, a 500, a 502 HTML page, a 529, a reset.
    #[default]
    Daily,
    /// Always fine: a healthy backup.
    Steady,
}

#[derive(Default)]
struct Sim {
    /// The provider's name, in every answer.
    provider: &'static str,
    mix: Mix,
    requests: AtomicU64,
    /// Requests left in the current burst of 503s.
    burst: AtomicU64,
}

/// The routes of the simulated provider `provider`, answering with `mix`.
pub fn router(provider: &'static str, mix: Mix) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                r#"{"error":{"message":"Unknown request URL","type":"invalid_request_error","param":null,"code":"unknown_url"}}"#,
            )
        })
        .with_state(Arc::new(Sim {
            provider,
            mix,
            ..Sim::default()
        }))
}

async fn models() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"},{"id":"sim-down","object":"model"},{"id":"sim-stall","object":"model"}]}"#,
    )
}

/// What one request gets.
enum Outcome {
    Ok,
    RateLimited,
    Burst503,
    Internal,
    BadGatewayHtml,
    Reset,
    Quota,
    Overloaded,
    Stall,
    Slow,
    BadKey,
}

impl Sim {
    fn pick(&self, model: &str) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
        for (needle, outcome) in [
            ("down", Outcome::Burst503),
            ("quota", Outcome::Quota),
            ("overloaded", Outcome::Overloaded),
            ("stall", Outcome::Stall),
            ("slow", Outcome::Slow),
            ("reset", Outcome::Reset),
            ("badkey", Outcome::BadKey),
        ] {
            if model.contains(needle) {
                return outcome;
            }
        }
        if self.mix == Mix::Steady {
            return Outcome::Ok;
        }
        // Bursts: once a 503 starts, the next few requests get one too.
        if self
            .burst
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Outcome::Burst503;
        }
        match fastrand::u32(0..100) {
            0..=69 => Outcome::Ok,
            70..=81 => Outcome::RateLimited,
            82..=87 => {
                self.burst.store(fastrand::u64(1..4), Ordering::Relaxed);
                Outcome::Burst503
            }
            88..=91 => Outcome::Internal,
            92..=94 => Outcome::BadGatewayHtml,
            95..=96 => Outcome::Overloaded,
            _ => Outcome::Reset,
        }
    }
}

async fn chat(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                r#"{"error":{"message":"We could not parse the JSON body of your request.","type":"invalid_request_error","param":null,"code":null}}"#,
            )
        }
    };
    let model = json["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    let stream = json["stream"].as_bool().unwrap_or(false)
        || headers
            .get("accept")
            .is_some_and(|a| a.as_bytes().starts_with(b"text/event-stream"));

    let reply = |stream, failure| answer(sim.provider, &model, stream, failure);
    match sim.pick(&model) {
        Outcome::Ok => reply(stream, None),
        Outcome::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reply(stream, None)
        }
        Outcome::Stall => reply(true, Some(Failure::Stall)),
        Outcome::Reset => reply(stream, Some(Failure::Reset)),
        Outcome::RateLimited => {
            let mut res = error(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"error":{"message":"Rate limit reached for requests. Please try again shortly.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            );
            let h = res.headers_mut();
            if fastrand::bool() {
                let ms = fastrand::u32(100..800);
                h.insert("retry-after-ms", ms.into());
            } else {
                h.insert("x-ratelimit-remaining-requests", 0.into());
                h.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
            }
            res
        }
        Outcome::Burst503 => {
            let mut res = error(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":{"message":"上游模型服务暂时不可用","type":"service_unavailable","code":"service_unavailable"}}"#,
            );
            res.headers_mut().insert("retry-after", 1.into());
            res
        }
        Outcome::Internal => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"An internal error occurred","type":"api_error","code":"500"}}"#,
        ),
        Outcome::BadGatewayHtml => {
            let mut res = (
                StatusCode::BAD_GATEWAY,
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response();
            res.headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            res
        }
        Outcome::Overloaded => error(
            StatusCode::from_u16(529).unwrap(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        Outcome::Quota => error(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        ),
        Outcome::BadKey => error(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"message":"Invalid API key or token provided","type":"invalid_api_key","code":"401"}}"#,
        ),
    }
}

fn error(status: StatusCode, body: &'static str) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    res
}

enum Failure {
    Stall,
    Reset,
}

static IDS: AtomicU64 = AtomicU64::new(1);

/// A JSON answer; with `reset`, the headers promise more than is sent: the
/// connection breaks mid-body.
fn whole(body: String, reset: bool) -> Response {
    let mut res = if reset {
        let half = Bytes::copy_from_slice(&body.as_bytes()[..body.len() / 2]);
        let frames = futures_util::stream::iter([
            Ok::<_, std::io::Error>(Frame::data(half)),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        ]);
        Response::new(Body::new(http_body_util::StreamBody::new(frames)))
    } else {
        Response::new(Body::from(body))
    };
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    res
}

fn answer(provider: &str, model: &str, stream: bool, failure: Option<Failure>) -> Response {
    let id = format!("chatcmpl-sim-{}", IDS.fetch_add(1, Ordering::Relaxed));
    let words = [
        "Resilience",
        " is",
        " retrying",
        " what",
        " may",
        " succeed",
        ".",
    ];
    if !stream {
        let content: String = words.concat();
        let body = serde_json::json!({
            "id": id, "object": "chat.completion", "created": 1_767_225_600u64, "model": model,
            "system_fingerprint": provider,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}
        })
        .to_string();
        return whole(body, matches!(failure, Some(Failure::Reset)));
    }

    let model = model.to_owned();
    let provider = provider.to_owned();
    let chunks = futures_util::stream::iter(0..words.len() + 1).then(move |i| {
        let id = id.clone();
        let model = model.clone();
        let provider = provider.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let data = if i < words.len() {
                let chunk = serde_json::json!({
                    "id": id, "object": "chat.completion.chunk", "created": 1_767_225_600u64, "model": model,
                    "system_fingerprint": provider,
                    "choices": [{"index": 0, "delta": {"content": words[i]}, "finish_reason": null}]
                });
                format!("data: {chunk}\n\n")
            } else {
                "data: [DONE]\n\n".to_owned()
            };
            Ok::<_, Infallible>(Frame::data(Bytes::from(data)))
        }
    });
    let body = match failure {
        None => Body::new(http_body_util::StreamBody::new(chunks)),
        Some(Failure::Stall) => Body::new(http_body_util::StreamBody::new(
            chunks.take(2).chain(futures_util::stream::pending()),
        )),
        Some(Failure::Reset) => Body::new(http_body_util::StreamBody::new(
            chunks
                .take(3)
                .map(|r| r.map_err(|never| match never {}))
                .chain(futures_util::stream::iter([Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ))])),
        )),
    };
    let mut res = Response::new(body);
    res.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    res.headers_mut()
        .insert("cache-control", "no-cache".parse().unwrap());
    res
}
