//! What the overhead benches, the contention bench and the allocation test
//! share: the request, the upstream, every stack measured, and one call.
//!
//! Included with `#[path = "../benches/support/mod.rs"]` by `tests/alloc.rs`,
//! so the allocation counts are taken on exactly the stacks that are timed.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http_resilience::fallback::{Target, Targets};
use tower_http_resilience::pacing::PacingLayer;
use tower_http_resilience::stack::{ResilienceConfig, ResilienceLayer};
use tower_http_resilience::timeout::AttemptTimeoutLayer;
use tower_http_resilience::{CircuitBreakerLayer, NormalizeClientLayer, RetryLayer, TimeoutLayer};

/// A chat-completion request body of 206 bytes, as in the anchors.
pub const CHAT_BODY: &str = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a terse assistant.\"},{\"role\":\"user\",\"content\":\"Summarize the plot of Hamlet in a short sentence.\"}],\"temperature\":0.2,\"max_tokens\":128}";

const OK_BODY: &str = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"A prince avenges his father.\"},\"finish_reason\":\"stop\"}]}";

const OVERLOADED_BODY: &str = "{\"error\":{\"message\":\"The server is overloaded.\",\"type\":\"server_error\",\"code\":\"overloaded\"}}";

/// The request every variant is sent: a 206-byte JSON POST with the headers
/// of a typical API client (built anew for every call, empty extensions).
pub fn chat_request() -> Request<Full<Bytes>> {
    Request::post("http://api.example.test/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer sk-bench-0000000000000000")
        .body(Full::new(Bytes::from_static(CHAT_BODY.as_bytes())))
        .unwrap()
}

/// How a call is made and its answer consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The upstream answers at once; the response is dropped unread.
    Dropped,
    /// The upstream answers at once; the body is read to the end.
    Body,
    /// The upstream is pending once (and wakes itself) before answering,
    /// like a real network call; the body is read to the end.
    PendingOnce,
}

impl Mode {
    /// All modes, in table order.
    pub const ALL: [Mode; 3] = [Mode::Dropped, Mode::Body, Mode::PendingOnce];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dropped => "dropped",
            Mode::Body => "body read",
            Mode::PendingOnce => "pending once",
        }
    }

    fn reads_body(self) -> bool {
        self != Mode::Dropped
    }
}

/// The upstream: streams the request body to its end (as a client writing
/// it to a socket would), then answers 200 with a small JSON body, or 503
/// with an error body and `x-should-retry: false` (so the failure path
/// is measured without a backoff sleep).
#[derive(Clone, Copy, Debug)]
pub struct Upstream {
    pub pending_once: bool,
    pub fail: bool,
}

impl Upstream {
    /// The upstream for a mode, answering 200.
    pub fn ok(mode: Mode) -> Self {
        Upstream {
            pending_once: mode == Mode::PendingOnce,
            fail: false,
        }
    }

    /// The upstream for a mode, answering 503.
    pub fn overloaded(mode: Mode) -> Self {
        Upstream {
            pending_once: mode == Mode::PendingOnce,
            fail: true,
        }
    }
}

impl<B> Service<Request<B>> for Upstream
where
    B: Body,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = UpstreamFuture<B>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        UpstreamFuture {
            body: req.into_body(),
            body_done: false,
            pending: self.pending_once,
            fail: self.fail,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Upstream`].
    #[derive(Debug)]
    pub struct UpstreamFuture<B> {
        #[pin]
        body: B,
        body_done: bool,
        pending: bool,
        fail: bool,
    }
}

impl<B: Body> Future for UpstreamFuture<B> {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        while !*this.body_done {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_)) | None) => *this.body_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        if *this.pending {
            *this.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let res = if *this.fail {
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-should-retry", "false")
                .body(Full::new(Bytes::from_static(OVERLOADED_BODY.as_bytes())))
        } else {
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(OK_BODY.as_bytes())))
        };
        Poll::Ready(Ok(res.unwrap()))
    }
}

/// One call: readiness, the call, and the response consumed as the mode
/// says. Returns whether the call succeeded.
pub async fn call<S, B>(svc: &mut S, mode: Mode) -> bool
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    B: Body,
{
    let Ok(svc) = svc.ready().await else {
        return false;
    };
    match svc.call(chat_request()).await {
        Ok(res) => {
            if mode.reads_body() {
                let body = std::pin::pin!(res.into_body());
                let mut body = body;
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        return false;
                    }
                }
            }
            true
        }
        Err(_) => false,
    }
}

/// The runtime of the single-thread figures.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Anchors
// ---------------------------------------------------------------------------

/// A tower retry policy that clones the request (head and `Full` body),
/// retries 5xx up to twice, and optionally uses tower's `TpsBudget`.
#[derive(Clone, Debug)]
pub struct ClonePolicy {
    attempts: usize,
    budget: Option<Arc<tower::retry::budget::TpsBudget>>,
}

impl<B: Clone, Res, E> tower::retry::Policy<Request<B>, Response<Res>, E> for ClonePolicy {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<Res>, E>,
    ) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        let retryable = match result {
            Ok(res) => res.status().is_server_error(),
            Err(_) => true,
        };
        if !retryable {
            if let Some(budget) = &self.budget {
                budget.deposit();
            }
            return None;
        }
        if self.attempts == 0 {
            return None;
        }
        if let Some(budget) = &self.budget {
            if !budget.withdraw() {
                return None;
            }
        }
        self.attempts -= 1;
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

/// tower `Timeout` (60 s).
pub fn tower_timeout(up: Upstream) -> tower::timeout::Timeout<Upstream> {
    tower::timeout::Timeout::new(up, Duration::from_secs(60))
}

/// tower `Retry` with a request-cloning policy → tower `Timeout`.
pub fn tower_retry_timeout(
    up: Upstream,
    budget: bool,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>> + Clone {
    let policy = ClonePolicy {
        attempts: 2,
        budget: budget.then(|| {
            Arc::new(tower::retry::budget::TpsBudget::new(
                Duration::from_secs(10),
                10,
                0.2,
            ))
        }),
    };
    ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(policy))
        .timeout(Duration::from_secs(60))
        .service(up)
}

/// tower-http `TimeoutLayer` (60 s, answering 408).
pub fn tower_http_timeout(up: Upstream) -> tower_http::timeout::Timeout<Upstream> {
    tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(60),
    )
    .layer(up)
}

type Req = Request<Full<Bytes>>;
type Res = Response<Full<Bytes>>;

/// tower-resilience's circuit breaker, default settings.
pub fn tr_breaker(up: Upstream) -> impl Service<Req, Response = Res> + Clone {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .layer(up)
}

/// tower-resilience's retry (3 attempts, exponential backoff), alone.
pub fn tr_retry(up: Upstream) -> impl Service<Req, Response = Res> + Clone {
    tower_resilience::retry::RetryLayer::<Req, Res, Infallible>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .build()
        .layer(up)
}

/// tower-resilience's time limiter (60 s), alone.
pub fn tr_time_limiter(up: Upstream) -> impl Service<Req, Response = Res> + Clone {
    tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(60))
        .build()
        .layer(up)
}

/// tower-resilience's retry → circuit breaker → time limiter.
pub fn tr_stack(up: Upstream) -> impl Service<Req, Response = Res> + Clone {
    use tower_resilience::circuitbreaker::CircuitBreakerError;
    use tower_resilience::timelimiter::TimeLimiterError;
    type E = CircuitBreakerError<TimeLimiterError<Infallible>>;
    ServiceBuilder::new()
        .layer(
            tower_resilience::retry::RetryLayer::<Req, Res, E>::builder()
                .max_attempts(3)
                .exponential_backoff(Duration::from_millis(100))
                .build(),
        )
        .layer(
            tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .unwrap(),
        )
        .layer(
            tower_resilience::timelimiter::TimeLimiterLayer::builder()
                .timeout_duration(Duration::from_secs(60))
                .build(),
        )
        .service(up)
}

// ---------------------------------------------------------------------------
// Ours
// ---------------------------------------------------------------------------

/// `NormalizeClientLayer` alone.
pub fn normalize(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    NormalizeClientLayer::new().layer(up)
}

/// `TimeoutLayer` alone, default settings (ordinary profile, body clock,
/// JSON body peeked for `"stream"`, deadline published).
pub fn timeout(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    TimeoutLayer::new().layer(up)
}

/// `AttemptTimeoutLayer` (30 s) alone.
pub fn attempt_timeout(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    AttemptTimeoutLayer::new(Duration::from_secs(30)).layer(up)
}

/// `RetryLayer` alone, default settings (its budget included).
pub fn retry(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    RetryLayer::new().layer(up)
}

/// `CircuitBreakerLayer` alone, global key.
pub fn breaker(up: Upstream) -> tower_http_resilience::CircuitBreaker<Upstream> {
    CircuitBreakerLayer::new().layer(up)
}

/// `PacingLayer` alone, default settings: the request's key (host, a
/// hash of its credential) is never held.
pub fn pacing(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    PacingLayer::new().layer(up)
}

/// The preset, client flavour, default settings: `ResilienceLayer::new()`
/// (normalize → total timeout → retry, one target → pacing → breaker keyed
/// by model, host or global → attempt timeout). The request has no model
/// extension, so its breaker is the host's.
pub fn preset(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    ResilienceLayer::new().layer(up)
}

/// The same stack built by hand with `ServiceBuilder` (global breaker key).
pub fn hand_built(up: Upstream) -> impl Service<Req, Response = Response<impl Body>> {
    ServiceBuilder::new()
        .layer(NormalizeClientLayer::new())
        .layer(TimeoutLayer::new())
        .layer(RetryLayer::new())
        .layer(PacingLayer::new())
        .layer(CircuitBreakerLayer::new())
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(30)))
        .service(up)
}

/// The preset with two targets, the first healthy: a fallback route. The
/// first target is named only (`rewrites: false`), or, like a gateway's,
/// sets its base URI, breaker key and credential (`rewrites: true`); the
/// second is never used.
pub fn preset_two_targets(
    up: Upstream,
    rewrites: bool,
) -> impl Service<Req, Response = Response<impl Body>> {
    let first = if rewrites {
        Target::new("primary:gpt-4o-mini")
            .base_uri("http://api.example.test".parse().unwrap())
            .key("primary:gpt-4o-mini")
            .bearer("sk-bench-primary-000000000000")
            .unwrap()
    } else {
        Target::new("primary")
    };
    let backup = Target::new("backup:gpt-4o-mini")
        .base_uri("http://backup.example.test/v1".parse().unwrap())
        .key("backup:gpt-4o-mini")
        .model("gpt-4o-mini");
    ResilienceLayer::new()
        .targets(Targets::from([first, backup]))
        .layer(up)
}

/// The preset answering 503 from the upstream: its breaker is set never to
/// open (so every call is classified and recorded, and goes through).
pub fn preset_failing(mode: Mode) -> impl Service<Req, Response = Response<impl Body>> {
    ResilienceConfig::default()
        .breaker_min_calls(u32::MAX)
        .build()
        .unwrap()
        .layer(Upstream::overloaded(mode))
}

/// The preset with the host's breaker forced open: every call is rejected.
pub fn preset_open() -> impl Service<Req, Response = Response<impl Body>> {
    let layer = ResilienceLayer::new();
    layer
        .breaker_handle()
        .force_open("api.example.test", Duration::from_secs(24 * 3600));
    layer.layer(Upstream::ok(Mode::Dropped))
}

/// A hyper-util client sending the bodies the preset hands it.
pub type HyperClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tower_http_resilience::retry::ReplayBody<
        tower_http_resilience::timeout::RequestBody<Full<Bytes>>,
    >,
>;

/// The preset over a hyper-util client (the loopback bench).
pub fn preset_over(
    client: HyperClient,
) -> impl Service<
    Req,
    Response = Response<impl Body<Data = Bytes, Error = tower_http_resilience::BoxError> + Send>,
    Error = tower_http_resilience::ApiError,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    ResilienceLayer::new().layer(client)
}
