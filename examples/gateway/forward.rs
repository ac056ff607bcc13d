//! [`Forward`]: one call sent to an upstream through the resilience stack.
//!
//! It receives the request whole (its body read by the collect layer),
//! reads the JSON body's `model` and `stream`, puts the model's targets
//! ([`Routes::targets_for`]) in the request's extensions for the stack's
//! fallback, drops hop-by-hop headers both ways, asks for an identity
//! encoding, runs the checks, and tells the gateway what happened
//! ([`CallInfo`], `x-gateway-target`, `x-gateway-attempts`): the target
//! that answered or was tried last ([`Served`]) and the attempts sent on
//! every target.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::check::{Check, CheckBody, CheckLayer};
use tower_http_resilience::collect::CollectedBody;
use tower_http_resilience::fallback::{Served, Targets};
use tower_http_resilience::pacing::PacingRefusal;
use tower_http_resilience::timeout::Profile;
use tower_http_resilience::{ApiError, BoxError};

use crate::client::UpstreamClient;
use crate::headers::{
    drop_hop_by_hop, is_event_stream, model_name, X_GATEWAY_ATTEMPTS, X_GATEWAY_TARGET,
};
use crate::log::escape;
use crate::routes::Routes;
use crate::stack::{Stack, StackLayer, Trace};

/// The longest `model` used as a breaker key and logged.
const MAX_MODEL: usize = 256;

/// A hold shorter than this is not one.
const MIN_HELD: Duration = Duration::from_millis(1);

/// A response body as the gateway passes it on.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// What a forwarded call was, for the log line; in the response's
/// extensions.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub model: Option<String>,
    pub target: String,
    pub streaming: bool,
    pub attempts: u32,
    /// How long pacing held the call back: the time it waited before it
    /// was sent, or the wait it was refused when it was answered 429
    /// without being sent.
    pub held: Option<Duration>,
}

/// Sends each call to its targets through the stack, behind the checks
/// when they are on.
#[derive(Clone)]
pub struct Forward {
    inner: Inner,
    routes: Arc<Routes>,
}

#[derive(Clone)]
enum Inner {
    Checked(Check<Stack>),
    Unchecked(Stack),
}

impl Forward {
    pub fn new(
        stack: &StackLayer,
        client: UpstreamClient,
        checks: Option<&CheckLayer>,
        routes: Arc<Routes>,
    ) -> Self {
        let stack = stack.layer(client);
        let inner = match checks {
            Some(checks) => Inner::Checked(checks.layer(stack)),
            None => Inner::Unchecked(stack),
        };
        Forward { inner, routes }
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

impl Service<Request<CollectedBody>> for Forward {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The stack is made ready per call (a clone, in `forward`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<CollectedBody>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(req).await) })
    }
}

impl Forward {
    async fn forward(self, req: Request<CollectedBody>) -> Response<BoxBody> {
        let (mut parts, body) = req.into_parts();
        let (model, stream) = inspect(&parts.headers, body.bytes());
        // A credential in the model name never becomes a name of ours.
        let model = model.map(|m| model_name(m, &parts.headers));
        // Every target of the call, in order, for the stack's fallback.
        let targets = self.routes.targets_for(model.as_deref());

        let headers = &mut parts.headers;
        drop_hop_by_hop(headers);
        // Hyper sets these from the URI and the body; the body is whole.
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::EXPECT);
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if stream {
            parts.extensions.insert(Profile::Streaming);
        }
        let trace = Arc::new(Trace::default());
        parts.extensions.insert(trace.clone());
        parts.extensions.insert(targets.clone());

        let (res, reached) = self.inner.send(Request::from_parts(parts, body)).await;
        let (mut parts, body) = res.into_parts();
        drop_hop_by_hop(&mut parts.headers);
        let error = parts.extensions.get::<ApiError>();
        let refused = error
            .and_then(|e| e.extensions().get::<PacingRefusal>())
            .map(PacingRefusal::wait);
        // Until the checks' refusal, what the stack did: the attempts sent
        // (not those pacing refused or an open breaker rejected).
        let (target, attempts) = if reached {
            (served(&parts.extensions, &targets), trace.sent())
        } else {
            (first(&targets), 0)
        };
        let mut shown = String::new();
        escape(&target, &mut shown);
        let shown = HeaderValue::try_from(shown).expect("escaped text is a header value");
        parts.headers.insert(X_GATEWAY_TARGET, shown);
        parts
            .headers
            .insert(X_GATEWAY_ATTEMPTS, HeaderValue::from(attempts));
        let held = refused.or(Some(trace.held()).filter(|&d| d >= MIN_HELD));
        let streaming = stream || is_event_stream(&parts.headers);
        parts.extensions.insert(CallInfo {
            model,
            target,
            streaming,
            attempts,
            held,
        });
        Response::from_parts(parts, body)
    }
}

/// The target a call that went through the stack answered from or was
/// tried on last: the [`Served`] in the response's extensions
/// (`extensions`) or in those of its error (the first target when neither
/// has one).
fn served(extensions: &http::Extensions, targets: &Targets) -> String {
    let error = extensions.get::<ApiError>().map(ApiError::extensions);
    match Served::of(extensions).or_else(|| error.and_then(Served::of)) {
        Some(served) => served.target().to_owned(),
        None => first(targets),
    }
}

/// The name of a call's first target.
fn first(targets: &Targets) -> String {
    targets
        .iter()
        .next()
        .map(|t| t.name().to_owned())
        .unwrap_or_default()
}

impl Inner {
    /// The response, and whether the request reached the stack (the
    /// stack answers every failure itself: an error is the checks'
    /// refusal).
    async fn send(self, req: Request<CollectedBody>) -> (Response<BoxBody>, bool) {
        let res = match self {
            Inner::Checked(check) => check.oneshot(req).await,
            Inner::Unchecked(stack) => match stack.oneshot(req.map(CheckBody::new)).await {
                Ok(res) => Ok(res),
                Err(never) => match never {},
            },
        };
        match res {
            Ok(res) => (res.map(|b| b.map_err(Into::into).boxed_unsync()), true),
            Err(err) => (render(err), false),
        }
    }
}

/// The response for an error the gateway answers itself: the envelope,
/// with the error in its extensions.
pub fn render(err: ApiError) -> Response<BoxBody> {
    let mut res = err.to_response::<Full<Bytes>>();
    res.extensions_mut().insert(err);
    res.map(|b| b.map_err(|never| match never {}).boxed_unsync())
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
            p.model.filter(|m| !m.is_empty() && m.len() <= MAX_MODEL),
            p.stream || accept_sse,
        ),
        Err(_) => (None, accept_sse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream() {
        let h = HeaderMap::new();
        assert_eq!(
            inspect(&h, br#"{"model":"m","stream":true}"#),
            (Some("m".into()), true)
        );
        assert_eq!(inspect(&h, br#"{"messages":[]}"#), (None, false));
        assert_eq!(inspect(&h, b"not json"), (None, false));
        let long = format!(r#"{{"model":"{}"}}"#, "m".repeat(300));
        assert_eq!(inspect(&h, long.as_bytes()), (None, false));
    }
}
