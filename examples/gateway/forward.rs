//! [`Forward`]: one call sent to an upstream through the resilience stack.
//!
//! It receives the request whole (its body read by the collect layer),
//! reads the JSON body's `model` and `stream`, resolves the model's
//! targets ([`Routes::targets_for`]) and makes the request one for the
//! first (URI base, credential, model: [`RouteTarget::apply`]), drops
//! hop-by-hop headers both ways, asks for an identity encoding, runs the
//! checks, and tells the gateway what it did ([`CallInfo`],
//! `x-gateway-target`, `x-gateway-attempts`).
//!
//! [`RouteTarget::apply`]: crate::target::RouteTarget::apply

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

/// Sends each call to its target through the stack, behind the checks
/// when they are on.
#[derive(Clone)]
pub struct Forward {
    /// A stack for each number of retries a target may have (all sharing
    /// one budget, the breakers and pacing).
    inners: Arc<[(Option<u32>, Inner)]>,
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
        let inners = routes
            .retries()
            .into_iter()
            .map(|retries| {
                let stack = stack.with_retries(retries).layer(client.clone());
                let inner = match checks {
                    Some(checks) => Inner::Checked(checks.layer(stack)),
                    None => Inner::Unchecked(stack),
                };
                (retries, inner)
            })
            .collect();
        Forward { inners, routes }
    }

    /// The stack for a target with `retries` retries.
    fn inner(&self, retries: Option<u32>) -> Inner {
        let (_, inner) = self
            .inners
            .iter()
            .find(|(r, _)| *r == retries)
            .expect("a stack for every target's retries");
        inner.clone()
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
        // Every target of the call, in order; the first is tried.
        let targets = self.routes.targets_for(model.as_deref());
        let target = &targets[0];

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

        let (res, reached) = match target.apply(&mut parts, body) {
            Ok(body) => {
                let inner = self.inner(target.retries);
                inner.send(Request::from_parts(parts, body)).await
            }
            Err(err) => (render(err), false),
        };
        let (mut parts, body) = res.into_parts();
        drop_hop_by_hop(&mut parts.headers);
        let refused = parts
            .extensions
            .get::<ApiError>()
            .and_then(|e| e.extensions().get::<PacingRefusal>())
            .map(PacingRefusal::wait);
        // Until the checks' refusal, the stack's trace: attempts sent, not
        // those pacing refused or an open breaker rejected.
        let attempts = if reached { trace.sent() } else { 0 };
        let mut shown = String::new();
        escape(&target.name, &mut shown);
        let shown = HeaderValue::try_from(shown).expect("escaped text is a header value");
        parts.headers.insert(X_GATEWAY_TARGET, shown);
        parts
            .headers
            .insert(X_GATEWAY_ATTEMPTS, HeaderValue::from(attempts));
        let held = refused.or(Some(trace.held()).filter(|&d| d >= MIN_HELD));
        let streaming = stream || is_event_stream(&parts.headers);
        parts.extensions.insert(CallInfo {
            model,
            target: target.name.to_string(),
            streaming,
            attempts,
            held,
        });
        Response::from_parts(parts, body)
    }
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
