//! [`Forward`]: one call sent to the upstream through the resilience stack.
//!
//! It receives the request whole (its body read by the collect layer, its
//! URI already joined onto the upstream's base), reads the JSON body's
//! `model` (the breaker key) and `stream`, drops hop-by-hop headers both
//! ways, asks for an identity encoding, and tells the gateway what it did
//! ([`CallInfo`], `x-gateway-target`, `x-gateway-attempts`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};
use tower_http_resilience::circuit_breaker::BreakerKey;
use tower_http_resilience::collect::CollectedBody;
use tower_http_resilience::retry::Attempts;
use tower_http_resilience::stack::ServerStack;
use tower_http_resilience::timeout::Profile;
use tower_http_resilience::BoxError;

use crate::client::UpstreamClient;
use crate::headers::{drop_hop_by_hop, is_event_stream, X_GATEWAY_ATTEMPTS, X_GATEWAY_TARGET};
use crate::log::escape;

/// The longest `model` used as a breaker key and logged.
const MAX_MODEL: usize = 256;

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
}

/// Sends each call to the upstream named `upstream` through `stack`.
#[derive(Clone)]
pub struct Forward {
    stack: ServerStack<UpstreamClient>,
    upstream: Arc<str>,
}

impl Forward {
    pub fn new(stack: ServerStack<UpstreamClient>, upstream: &str) -> Self {
        Forward {
            stack,
            upstream: upstream.into(),
        }
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
        let (parts, body) = req.into_parts();
        let (model, stream) = inspect(&parts.headers, body.bytes());

        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = parts.uri;
        let headers = up.headers_mut();
        *headers = parts.headers;
        drop_hop_by_hop(headers);
        // Hyper sets these from the URI and the body; the body is whole.
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::EXPECT);
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Some(model) = &model {
            up.extensions_mut().insert(BreakerKey::new(model.clone()));
        }
        if stream {
            up.extensions_mut().insert(Profile::Streaming);
        }

        let res = match self.stack.oneshot(up).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        let (mut parts, body) = res.into_parts();
        drop_hop_by_hop(&mut parts.headers);
        let target = match &model {
            Some(m) => format!("{}:{m}", self.upstream),
            None => self.upstream.to_string(),
        };
        let attempts = Attempts::of(&parts.extensions).get();
        let mut shown = String::new();
        escape(&target, &mut shown);
        let shown = HeaderValue::try_from(shown).expect("escaped text is a header value");
        parts.headers.insert(X_GATEWAY_TARGET, shown);
        parts
            .headers
            .insert(X_GATEWAY_ATTEMPTS, HeaderValue::from(attempts));
        let streaming = stream || is_event_stream(&parts.headers);
        parts.extensions.insert(CallInfo {
            model,
            target,
            streaming,
            attempts,
        });
        Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
    }
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
