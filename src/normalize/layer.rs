use tower_layer::Layer;

use super::secrets::Configured;
use super::service::{Normalize, NormalizeClient};
use crate::error::DEFAULT_BODY_CAP;

/// Server-side normalization: every failure leaves as the canonical envelope.
///
/// Wraps any `Service<http::Request<B>>` that answers `http::Response<_>`; the
/// wrapped service's error type is [`Infallible`](std::convert::Infallible),
/// so an axum `Router` takes it as a layer. See the [module docs](super).
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_http_resilience::NormalizeLayer;
///
/// let app: Router = Router::new()
///     .route("/health", get(|| async { "ok" }))
///     .layer(NormalizeLayer::new().body_cap(16 * 1024));
/// ```
#[derive(Clone, Debug)]
pub struct NormalizeLayer {
    body_cap: usize,
    secrets: Configured,
}

impl NormalizeLayer {
    /// A layer that reads at most [`DEFAULT_BODY_CAP`] bytes of an error body
    /// and knows no secrets besides the request's own credentials.
    pub const fn new() -> Self {
        NormalizeLayer {
            body_cap: DEFAULT_BODY_CAP,
            secrets: Configured::none(),
        }
    }

    /// Adds a secret the caller must never see, such as an upstream key the
    /// service adds to the calls it forwards.
    ///
    /// Like the request's own credentials, the value is removed from every
    /// error response (body and headers) and from the headers of every
    /// response, token by token (every token of 8 or more characters in it),
    /// or whole when it has no such token; see [what is
    /// masked](super#what-is-masked). A value shorter than 8 bytes is not
    /// masked: it would mask ordinary words. The layer keeps fingerprints of
    /// the value, not the value, so its `Debug` output cannot show it.
    ///
    /// ```
    /// use tower_http_resilience::NormalizeLayer;
    ///
    /// let layer = NormalizeLayer::new().secret("sk-upstream-0123456789abcdef");
    /// assert!(!format!("{layer:?}").contains("sk-upstream"));
    /// ```
    pub fn secret(mut self, value: impl AsRef<[u8]>) -> Self {
        self.secrets = self.secrets.with(value.as_ref());
        self
    }

    /// Sets how many bytes of an inner error body are read to rewrite it.
    ///
    /// A longer body is read up to this many bytes; the rest is dropped
    /// unread and the response is answered from its status and headers.
    pub const fn body_cap(mut self, bytes: usize) -> Self {
        self.body_cap = bytes;
        self
    }
}

impl Default for NormalizeLayer {
    fn default() -> Self {
        NormalizeLayer::new()
    }
}

impl<S> Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Normalize::new(inner, self.body_cap, self.secrets.clone())
    }
}

/// Client-side normalization: every failure arrives as an
/// [`ApiError`](crate::ApiError).
///
/// An upstream response with an error status becomes `Err(ApiError)` with
/// every field read from its status, headers and the first bytes of its body
/// (kept on the error); a gRPC trailers-only error does too; a transport
/// error is mapped by its source chain. Successful responses pass through
/// untouched. See the [module docs](super).
///
/// # Example
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_http_resilience::{ApiError, NormalizeClientLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower::ServiceExt;
/// let upstream = tower::service_fn(|_req: http::Request<String>| async {
///     let res = http::Response::builder()
///         .status(429)
///         .header("retry-after", "2")
///         .body(String::from(r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#))
///         .unwrap();
///     Ok::<_, std::convert::Infallible>(res)
/// });
/// let client = ServiceBuilder::new().layer(NormalizeClientLayer::new()).service(upstream);
///
/// let err: ApiError = client.oneshot(http::Request::new(String::new())).await.unwrap_err();
/// assert_eq!(err.code(), "rate_limit_exceeded");
/// assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(2)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct NormalizeClientLayer {
    body_cap: usize,
    secrets: Configured,
}

impl NormalizeClientLayer {
    /// A layer that reads at most [`DEFAULT_BODY_CAP`] bytes of an error body
    /// and knows no secrets besides the request's own credentials.
    pub const fn new() -> Self {
        NormalizeClientLayer {
            body_cap: DEFAULT_BODY_CAP,
            secrets: Configured::none(),
        }
    }

    /// Adds a secret that must never appear in an [`ApiError`](crate::ApiError)
    /// (its message, code, param, request id or upstream body) or in the
    /// headers of a response, such as a key added by a layer below.
    ///
    /// Works as [`NormalizeLayer::secret`] does; the request's own credentials
    /// are removed without being configured.
    ///
    /// ```
    /// use tower_http_resilience::NormalizeClientLayer;
    ///
    /// let layer = NormalizeClientLayer::new().secret("sk-upstream-0123456789abcdef");
    /// assert!(!format!("{layer:?}").contains("sk-upstream"));
    /// ```
    pub fn secret(mut self, value: impl AsRef<[u8]>) -> Self {
        self.secrets = self.secrets.with(value.as_ref());
        self
    }

    /// Sets how many bytes of an upstream error body are read (and kept on the
    /// error as [`ApiError::upstream_body`](crate::ApiError::upstream_body)).
    pub const fn body_cap(mut self, bytes: usize) -> Self {
        self.body_cap = bytes;
        self
    }
}

impl Default for NormalizeClientLayer {
    fn default() -> Self {
        NormalizeClientLayer::new()
    }
}

impl<S> Layer<S> for NormalizeClientLayer {
    type Service = NormalizeClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NormalizeClient::new(inner, self.body_cap, self.secrets.clone())
    }
}
