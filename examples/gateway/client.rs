//! [`UpstreamClient`]: the HTTP(S) client the gateway forwards with.
//!
//! The gateway asks upstreams for `accept-encoding: identity`: a stream
//! that fails midway ends with a last plain-text SSE event, which cannot be
//! appended inside a compressed body. An event stream that arrives
//! compressed anyway is refused as 502 `upstream_error` (before any of it
//! reaches the client), so that no client ever gets a compressed stream
//! with plain text inside it. Other compressed responses pass through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::Service;
use tower_http_resilience::check::CheckBody;
use tower_http_resilience::collect::CollectedBody;
use tower_http_resilience::stack::StackBody;
use tower_http_resilience::{ApiError, BoxError, ErrorKind};

use crate::headers::{is_encoded, is_event_stream};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A request body as the gateway forwards it: read whole, then checked
/// (or passed as it is when the checks are off).
pub type ForwardedBody = CheckBody<CollectedBody>;

/// A client for `http://` and `https://` upstreams (webpki roots, HTTP/1
/// and 2) that refuses compressed event streams.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<Https, StackBody<ForwardedBody>>,
}

/// A client with the gateway's settings.
pub fn upstream_client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    UpstreamClient {
        client: Client::builder(TokioExecutor::new()).build(https),
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send + 'static>>;

impl Service<Request<StackBody<ForwardedBody>>> for UpstreamClient {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.client.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<StackBody<ForwardedBody>>) -> Self::Future {
        let sent = self.client.call(req);
        Box::pin(async move {
            let res = sent.await?;
            if is_compressed_event_stream(&res) {
                let err = ApiError::new(ErrorKind::Upstream).with_message(
                    "the upstream sent a compressed event stream although the gateway asked for none",
                );
                return Err(err.into());
            }
            Ok(res)
        })
    }
}

fn is_compressed_event_stream<B>(res: &Response<B>) -> bool {
    is_event_stream(res.headers()) && is_encoded(res.headers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

    #[test]
    fn only_a_compressed_event_stream_is_refused() {
        let res = |ct: &str, ce: Option<&str>| {
            let mut b = Response::builder().header(CONTENT_TYPE, ct);
            if let Some(ce) = ce {
                b = b.header(CONTENT_ENCODING, ce);
            }
            b.body(()).unwrap()
        };
        assert!(is_compressed_event_stream(&res(
            "text/event-stream",
            Some("gzip")
        )));
        assert!(is_compressed_event_stream(&res(
            "Text/Event-Stream; charset=utf-8",
            Some("br")
        )));
        assert!(!is_compressed_event_stream(&res("text/event-stream", None)));
        assert!(!is_compressed_event_stream(&res(
            "text/event-stream",
            Some("identity")
        )));
        assert!(!is_compressed_event_stream(&res(
            "application/json",
            Some("gzip")
        )));
    }
}
