//! Fallback: every row of the table that says when a call is retried on a
//! target, moved to the next one at once, or handed back; streams that fail
//! before their first event; the most telling failure; the deadline over
//! the chain; what each target receives. Through the preset
//! (`ResilienceLayer::targets`), on a paused clock, against two scripted
//! upstreams told apart by the URI's host.

#![cfg(all(feature = "stack", feature = "fallback"))]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use support::{Plan, UpBody, Upstream};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::check::PromptTokens;
use tower_http_resilience::circuit_breaker::CircuitBreakerHandle;
use tower_http_resilience::fallback::{FallbackLayer, Served, Target, Targets};
use tower_http_resilience::retry::{Attempts, Backoff, Jitter, RetryBudget, RetryLayer};
use tower_http_resilience::{ApiError, BoxError, ErrorKind, ResilienceConfig, ResilienceLayer};

const BODY: &str = "{ \"model\" : \"gpt-4o\",\n  \"messages\": [{\"role\":\"user\",\"content\":\"say \\\"model\\\"\"}],\"stream\":false}";
const DOWN: &str = r#"{"error":{"message":"down","type":"server_error"}}"#;

/// Two upstreams behind one service: `a.test` and `b.test`.
#[derive(Clone)]
struct Two {
    a: Upstream,
    b: Upstream,
}

impl<B> Service<Request<B>> for Two
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<UpBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match req.uri().host() {
            Some("a.test") => self.a.call(req),
            Some("b.test") => self.b.call(req),
            other => panic!("no upstream at {other:?}"),
        }
    }
}

/// The first target: upstream `a`, the caller's model and credentials.
fn a() -> Target {
    Target::new("a:gpt-4o")
        .base_uri("http://a.test".parse().unwrap())
        .key("a:gpt-4o")
}

/// The second: upstream `b` under `/v1`, its own key and model name.
fn b() -> Target {
    Target::new("b:openai/gpt-4o")
        .base_uri("http://b.test/v1".parse().unwrap())
        .bearer("sk-b-target")
        .unwrap()
        .model("openai/gpt-4o")
        .key("b:openai/gpt-4o")
}

/// The preset with both targets: 2 retries on each, a constant 100 ms
/// backoff, no jitter.
fn preset(config: ResilienceConfig) -> ResilienceLayer {
    config
        .max_retries(2)
        .build()
        .unwrap()
        .map_retry(|r| {
            r.backoff(Backoff::constant(Duration::from_millis(100)))
                .jitter(Jitter::none())
        })
        .targets(Targets::from([a(), b()]))
}

fn post() -> Request<Full<Bytes>> {
    Request::post("http://gateway.test/v1/chat/completions?trace=1")
        .header("content-type", "application/json")
        .header("content-length", BODY.len().to_string())
        .header("authorization", "Bearer sk-caller-0000")
        .header("x-api-key", "sk-caller-0000")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap()
}

fn streaming() -> Request<Full<Bytes>> {
    let mut req = post();
    req.headers_mut()
        .insert("accept", "text/event-stream".parse().unwrap());
    req
}

fn served<B>(res: &Response<B>) -> (String, u32) {
    let target = Served::of(res.extensions()).expect("a target served");
    let attempts = Attempts::of(res.extensions()).get();
    (target.target().to_owned(), attempts)
}

fn failed(err: &ApiError) -> (String, u32) {
    let target = Served::of(err.extensions()).expect("a target failed");
    (
        target.target().to_owned(),
        Attempts::of(err.extensions()).get(),
    )
}

async fn text<B>(res: Response<B>) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

// ---------------------------------------------------------------------------
// Retried, then moved on.

#[tokio::test(start_paused = true)]
async fn five_hundreds_are_retried_on_the_first_target_then_the_second_serves() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let svc = preset(ResilienceConfig::default()).layer(two.clone());
    let start = Instant::now();
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 4));
    assert_eq!((two.a.calls(), two.b.calls()), (3, 1));
    // Two backoffs on `a`, none before `b`.
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(two.a.times(), [Duration::ZERO, ms(100), ms(200)]);
    assert_eq!(two.b.times(), [ms(200)]);
}

#[tokio::test(start_paused = true)]
async fn the_first_breaker_counts_one_failure_and_the_second_one_success() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let layer = preset(ResilienceConfig::default());
    let breakers: CircuitBreakerHandle = layer.breaker_handle();
    let res = layer.layer(two).oneshot(post()).await.unwrap();
    assert_eq!(text(res).await, "{}");
    let a = breakers.snapshot("a:gpt-4o").unwrap();
    let b = breakers.snapshot("b:openai/gpt-4o").unwrap();
    assert_eq!(
        (a.calls(), a.failures()),
        (1, 1),
        "three attempts, one call"
    );
    assert_eq!((b.calls(), b.failures()), (1, 0));
}

// ---------------------------------------------------------------------------
// Cannot serve: the next target at once.

#[tokio::test(start_paused = true)]
async fn an_open_breaker_moves_on_at_once_without_calling_the_first() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let layer = preset(ResilienceConfig::default());
    layer
        .breaker_handle()
        .force_open("a:gpt-4o", Duration::from_secs(30));
    let start = Instant::now();
    let res = layer.layer(two.clone()).oneshot(post()).await.unwrap();
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 1));
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_target_that_cannot_serve_gets_exactly_one_attempt() {
    let quota = r#"{"error":{"message":"no quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    let context = r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    let cases = [
        ("401", Plan::json(401, r#"{"error":{"message":"bad key"}}"#)),
        ("402", Plan::json(402, r#"{"error":{"message":"pay"}}"#)),
        ("403", Plan::json(403, r#"{"error":{"message":"no"}}"#)),
        (
            "404",
            Plan::json(404, r#"{"error":{"code":"model_not_found"}}"#),
        ),
        ("quota", Plan::json(429, quota)),
        (
            "long hint",
            Plan::json(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "120"),
        ),
        ("context length", Plan::json(400, context)),
    ];
    for (case, plan) in cases {
        let two = Two {
            a: Upstream::always(plan),
            b: Upstream::always(Plan::json(200, "{}")),
        };
        // No budget at all: moving on spends none.
        let layer = preset(ResilienceConfig::default())
            .map_retry(|r| r.budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0)));
        let start = Instant::now();
        let res = layer.layer(two.clone()).oneshot(post()).await.unwrap();
        assert_eq!(res.status(), 200, "{case}");
        assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 2), "{case}");
        assert_eq!((two.a.calls(), two.b.calls()), (1, 1), "{case}");
        assert_eq!(start.elapsed(), Duration::ZERO, "{case}: no backoff");
    }
}

#[tokio::test(start_paused = true)]
async fn a_prompt_over_a_window_skips_that_target() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let targets = Targets::from([a().context_window(8_000), b().context_window(128_000)]);
    let layer = preset(ResilienceConfig::default()).targets(targets);
    let svc = layer.layer(two.clone());
    let mut req = post();
    req.extensions_mut().insert(PromptTokens::new(9_000, 500));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 1));
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));

    // Over every window: 400 at once, nothing sent.
    let mut req = post();
    req.extensions_mut().insert(PromptTokens::new(200_000, 0));
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (400, "context_length_exceeded")
    );
    assert_eq!((two.a.calls(), two.b.calls()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn pacing_held_on_the_first_target_sends_to_the_second_without_touching_the_first() {
    let two = Two {
        // A rate limit for two minutes, beyond max_retry_after (60 s).
        a: Upstream::always(
            Plan::json(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "120"),
        ),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let layer = preset(ResilienceConfig::default());
    let svc = layer.layer(two.clone());
    let res = svc.clone().oneshot(post()).await.unwrap();
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 2));
    assert_eq!(layer.pacing_handle().holds().len(), 1, "a is held");

    // The next calls go to `b` at once: `a` is not sent anything.
    tokio::time::advance(Duration::from_secs(30)).await;
    let start = Instant::now();
    for _ in 0..3 {
        let res = svc.clone().oneshot(post()).await.unwrap();
        assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 1));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((two.a.calls(), two.b.calls()), (1, 4));
}

// ---------------------------------------------------------------------------
// Back to the caller.

#[tokio::test(start_paused = true)]
async fn an_invalid_request_goes_back_and_the_second_target_is_never_called() {
    for (status, body) in [
        (
            400,
            r#"{"error":{"message":"temperature must be <= 2","param":"temperature"}}"#,
        ),
        (
            422,
            r#"{"detail":[{"loc":["body","messages"],"msg":"field required"}]}"#,
        ),
    ] {
        let two = Two {
            a: Upstream::always(Plan::json(status, body)),
            b: Upstream::new(),
        };
        let err = preset(ResilienceConfig::default())
            .layer(two.clone())
            .oneshot(post())
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), status);
        assert_eq!(failed(&err), ("a:gpt-4o".into(), 1));
        assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_path_that_would_leave_the_base_is_refused_before_any_call() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::new(),
    };
    let mut req = post();
    *req.uri_mut() = "http://gateway.test/v1/%2e%2e/admin".parse().unwrap();
    let err = preset(ResilienceConfig::default())
        .layer(two.clone())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
    assert_eq!((two.a.calls(), two.b.calls()), (0, 0));
}

// ---------------------------------------------------------------------------
// Every target failed.

#[tokio::test(start_paused = true)]
async fn all_targets_down_is_one_envelope_that_says_do_not_retry() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(502, DOWN)),
    };
    let svc = preset(ResilienceConfig::default())
        .server()
        .layer(two.clone());
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 502, "the later of two generic failures");
    assert_eq!(res.headers()["x-should-retry"], "false");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 6));
    assert_eq!((two.a.calls(), two.b.calls()), (3, 3));
    let body: serde_json::Value = serde_json::from_slice(&text(res).await).unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(start_paused = true)]
async fn the_most_telling_failure_is_the_rate_limit_with_the_longest_wait() {
    let two = Two {
        a: Upstream::always(
            Plan::json(429, r#"{"error":{"message":"slow"}}"#).header("retry-after", "90"),
        ),
        b: Upstream::always(Plan::json(503, DOWN)),
    };
    let err = preset(ResilienceConfig::default())
        .layer(two.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (429, "rate_limit_exceeded")
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(90)));
    assert!(!err.is_retryable());
    // The failure is `a`'s; the call ended on `b`, tried last.
    assert_eq!(failed(&err), ("b:openai/gpt-4o".into(), 4));
}

#[tokio::test(start_paused = true)]
async fn open_breakers_everywhere_answer_with_the_shortest_time_left() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::new(),
    };
    let layer = preset(ResilienceConfig::default());
    let breakers = layer.breaker_handle();
    breakers.force_open("a:gpt-4o", Duration::from_secs(40));
    breakers.force_open("b:openai/gpt-4o", Duration::from_secs(10));
    let err = layer.layer(two.clone()).oneshot(post()).await.unwrap_err();
    assert_eq!(err.code(), "circuit_open");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(Served::of(err.extensions()).unwrap().index(), 1);
    assert_eq!((two.a.calls(), two.b.calls()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_covers_the_chain() {
    // Every attempt hangs until its attempt timeout (4 s); the total is 10 s.
    let two = Two {
        a: Upstream::always(Plan::hang()),
        b: Upstream::always(Plan::hang()),
    };
    let config = ResilienceConfig::default()
        .total_timeout(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(4));
    let start = Instant::now();
    let err = preset(config)
        .targets(Targets::from([a().retries(1), b()]))
        .layer(two.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    // a: at 0 s and, after a backoff, at 4.1 s; b at once at 8.1 s, cut by
    // the deadline.
    assert_eq!(two.a.times(), [Duration::ZERO, ms(4100)]);
    assert_eq!(two.b.times(), [ms(8100)]);
}

#[tokio::test(start_paused = true)]
async fn no_target_is_started_past_the_deadline() {
    // The loop's own deadline (no outer timeout cuts the attempt): `a`
    // answers after it, so `b` is never tried.
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN).after(Duration::from_secs(11))),
        b: Upstream::new(),
    };
    let layer = FallbackLayer::new(Targets::from([a(), b()])).retry(
        RetryLayer::new()
            .max_retries(0)
            .deadline(Duration::from_secs(10)),
    );
    let res = layer.layer(two.clone()).oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
}

// ---------------------------------------------------------------------------
// Streams commit at their first event.

const B_STREAM: [&str; 3] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    ": keep-alive\n\n",
    "data: [DONE]\n\n",
];

fn b_stream() -> Upstream {
    Upstream::always(Plan::sse(&B_STREAM))
}

/// `first` from `a` fails the call's attempt there after `failed_after`;
/// `b` answers a second later, past the first-byte clock of the call's
/// start: each attempt has its own.
async fn served_by_b(first: Plan, failed_after: Duration) {
    let two = Two {
        a: Upstream::always(first),
        b: Upstream::always(Plan::sse(&B_STREAM).after(Duration::from_secs(1))),
    };
    let config = ResilienceConfig::default().stream_first_byte_timeout(Duration::from_secs(5));
    let layer = preset(config).targets(Targets::from([a().retries(0), b()]));
    let breakers = layer.breaker_handle();
    let start = Instant::now();
    let res = layer.layer(two.clone()).oneshot(streaming()).await.unwrap();
    assert_eq!(start.elapsed(), failed_after + Duration::from_secs(1));
    assert_eq!(served(&res), ("b:openai/gpt-4o".into(), 2));
    assert_eq!(text(res).await, B_STREAM.concat(), "byte for byte");
    assert_eq!((two.a.calls(), two.b.calls()), (1, 1));
    let a = breakers.snapshot("a:gpt-4o").unwrap();
    assert_eq!((a.calls(), a.failures()), (1, 1), "the stream failed");
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_no_first_event_within_the_first_byte_clock_is_served_by_the_second() {
    let silent = Plan::sse(&[": thinking\n\n"]).then_stall();
    served_by_b(silent, Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_first_event_is_an_error_is_served_by_the_second() {
    let error = Plan::sse(&[
        ": hi\n\n",
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
        "data: [DONE]\n\n",
    ]);
    served_by_b(error, Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_or_breaks_before_data_is_served_by_the_second() {
    let two = Two {
        a: Upstream::script([Plan::sse(&[": bye\n\n"]), Plan::sse(&["da"]).then_reset()]),
        b: b_stream(),
    };
    let layer = preset(ResilienceConfig::default());
    let svc = layer.layer(two.clone());
    for _ in 0..2 {
        let res = svc.clone().oneshot(streaming()).await.unwrap();
        assert_eq!(Served::of(res.extensions()).unwrap().index(), 1);
        assert_eq!(text(res).await, B_STREAM.concat());
    }
    // Each ended stream was retried on `a` twice before moving on.
    assert_eq!((two.a.calls(), two.b.calls()), (6, 2));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_first_event_is_not_failed_over() {
    let two = Two {
        a: Upstream::always(Plan::sse(&["data: {\"n\":1}\n\n"]).then_reset()),
        b: b_stream(),
    };
    let svc = preset(ResilienceConfig::default())
        .server()
        .layer(two.clone());
    let res = svc.oneshot(streaming()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served(&res), ("a:gpt-4o".into(), 1));
    let body = String::from_utf8(text(res).await.to_vec()).unwrap();
    assert!(body.starts_with("data: {\"n\":1}\n\n"), "{body}");
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("data: {\"error\":"), "{body}");
    assert_eq!((two.a.calls(), two.b.calls()), (1, 0));
}

// ---------------------------------------------------------------------------
// What each target receives.

#[tokio::test(start_paused = true)]
async fn each_target_gets_its_base_credential_and_model() {
    let two = Two {
        a: Upstream::always(Plan::json(503, DOWN)),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    preset(ResilienceConfig::default().max_retries(0))
        .layer(two.clone())
        .oneshot(post())
        .await
        .unwrap();
    // `a`: the caller's request, at a's base.
    let got = two.a.last();
    assert_eq!(got.uri, "http://a.test/v1/chat/completions?trace=1");
    assert_eq!(got.header("authorization"), Some("Bearer sk-caller-0000"));
    assert_eq!(got.body, BODY);
    // `b`: its own key alone, its model, every other byte as sent.
    let got = two.b.last();
    assert_eq!(got.uri, "http://b.test/v1/chat/completions?trace=1");
    assert_eq!(got.header("authorization"), Some("Bearer sk-b-target"));
    assert_eq!(got.header("x-api-key"), None);
    let renamed = BODY.replacen("\"gpt-4o\"", "\"openai/gpt-4o\"", 1);
    assert_eq!(got.body, renamed);
    assert_eq!(
        got.header("content-length"),
        Some(&*renamed.len().to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_renaming_first_target_reads_the_body_whole_first() {
    let two = Two {
        a: Upstream::new(),
        b: Upstream::always(Plan::json(200, "{}")),
    };
    let svc = FallbackLayer::new(Targets::from([b(), a()])).layer(two.clone());
    // A body in three chunks, the model split across them.
    let chunks = ["{\"mo", "del\":\"gpt-", "4o\",\"n\":1}"];
    let frames = chunks.map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(c))));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::post("http://gateway.test/v1/chat/completions")
        .body(body)
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(two.b.last().body, "{\"model\":\"openai/gpt-4o\",\"n\":1}");
}

// ---------------------------------------------------------------------------
// One loop.

#[tokio::test(start_paused = true)]
async fn a_fallback_layer_around_a_retry_layer_does_not_multiply_attempts() {
    let two = Two {
        a: Upstream::always(Plan::status(503)),
        b: Upstream::always(Plan::status(503)),
    };
    let fast = || {
        RetryLayer::new()
            .max_retries(2)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .jitter(Jitter::none())
    };
    let inner = fast().max_retries(5).layer(two.clone());
    let svc = FallbackLayer::new(Targets::from([a(), b()]))
        .retry(fast())
        .layer(inner);
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(Attempts::of(res.extensions()).get(), 6);
    assert_eq!((two.a.calls(), two.b.calls()), (3, 3));
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
