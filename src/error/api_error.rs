use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

#[cfg(feature = "normalize")]
use super::redact::{holds_secret, redact_body, RedactedError};
use super::redact::{redact_str, Needles, NO_NEEDLES};
use super::status::GrpcStatus;
use super::{ErrorKind, TimeoutPhase};
use crate::hint::ServerHints;

/// The longest `message` an error keeps, in bytes; longer ones are cut at a
/// character boundary and end with `…`.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The longest request id kept, in bytes.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A failure in the canonical model: what went wrong, what to tell the caller,
/// and whether and when to try again.
///
/// Every layer of this crate fails with an `ApiError`, every upstream error
/// response is read into one, and the server-side
/// [`NormalizeLayer`](crate::normalize::NormalizeLayer) renders one as the
/// canonical JSON envelope (or a gRPC status, or a last SSE event):
///
/// ```json
/// {"error": {"message": "…", "type": "…", "param": null, "code": "…"}}
/// ```
///
/// An `ApiError` is cheap to move (one pointer) and to clone (its source is
/// shared). It keeps the error it was made from as its
/// [`source`](std::error::Error::source), and, when read from an upstream
/// response, a bounded prefix of the upstream's body.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::{ApiError, ErrorKind};
///
/// let err = ApiError::new(ErrorKind::RateLimited)
///     .with_message("slow down")
///     .with_retry_after(Duration::from_millis(1500));
///
/// assert_eq!(err.status(), http::StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(err.error_type(), "rate_limit_error");
/// assert_eq!(err.code(), "rate_limit_exceeded");
/// assert!(err.is_retryable());
///
/// let response = err.to_response::<bytes::Bytes>();
/// assert_eq!(response.headers()["retry-after"], "2"); // rounded up
/// assert_eq!(
///     response.body().as_ref(),
///     br#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#
/// );
/// ```
#[derive(Clone)]
pub struct ApiError {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    status: StatusCode,
    message: Cow<'static, str>,
    code: Cow<'static, str>,
    param: Option<String>,
    hints: ServerHints,
    request_id: Option<String>,
    timeout_phase: Option<TimeoutPhase>,
    upstream_status: Option<StatusCode>,
    upstream_body: Option<Bytes>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
    grpc: GrpcStatus,
    extensions: http::Extensions,
}

impl ApiError {
    /// An error of `kind` with the kind's canonical status, default code and a
    /// generic message.
    pub fn new(kind: ErrorKind) -> Self {
        ApiError {
            inner: Box::new(Inner {
                kind,
                status: kind.status(),
                message: Cow::Borrowed(kind.default_message()),
                code: Cow::Borrowed(kind.default_code()),
                param: None,
                hints: ServerHints::none(),
                request_id: None,
                timeout_phase: None,
                upstream_status: None,
                upstream_body: None,
                source: None,
                grpc: GrpcStatus::default(),
                extensions: http::Extensions::new(),
            }),
        }
    }

    /// The rejection of an open circuit breaker: 503 `circuit_open`, with
    /// `retry-after` set to the time the breaker stays open.
    pub fn circuit_open(retry_after: Duration) -> Self {
        ApiError::new(ErrorKind::CircuitOpen).with_retry_after(retry_after)
    }

    /// A timeout of `phase` after `after`: 504 `timeout`, with a message that
    /// names the phase.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_resilience::{ApiError, TimeoutPhase};
    ///
    /// let err = ApiError::timeout(TimeoutPhase::Idle, Duration::from_secs(90));
    /// assert_eq!(err.message(), "stream idle for longer than 90s");
    /// assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Idle));
    /// ```
    pub fn timeout(phase: TimeoutPhase, after: Duration) -> Self {
        let mut err = ApiError::new(ErrorKind::Timeout).with_message(phase.message(after));
        err.inner.timeout_phase = Some(phase);
        err
    }

    /// Sets the message shown to people.
    ///
    /// The message is cut to [`MAX_MESSAGE_LEN`] bytes, and anything in it
    /// shaped like a credential (an `sk-…`, `sk_…` or `AIza…` key, a JSON Web
    /// Token, the token after `Bearer`) is replaced by
    /// [`REDACTED`](super::REDACTED).
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.inner.grpc.changed();
        self.inner.message = sanitize_message(message.into(), NO_NEEDLES);
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.inner.code = code.into();
        self
    }

    /// Sets the request field the error is about.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.inner.param = Some(param.into());
        self
    }

    /// Sets the HTTP status, for an error whose status differs from its
    /// kind's canonical one (an upstream `405` of kind
    /// [`ErrorKind::InvalidRequest`], say).
    ///
    /// A status below 400 is ignored.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        if status.as_u16() >= 400 {
            self.inner.status = status;
            self.inner.grpc = GrpcStatus::default();
        }
        self
    }

    /// Sets how long the caller should wait before trying again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        let should_retry = self.inner.hints.should_retry();
        self.inner.hints = ServerHints::new(should_retry, Some(retry_after));
        self
    }

    /// Sets the server hints (retry decision and wait) the error carries.
    pub fn with_hints(mut self, hints: ServerHints) -> Self {
        self.inner.hints = hints;
        self
    }

    /// Sets the request id echoed in `x-request-id`.
    ///
    /// An id that is empty, longer than 128 bytes or not visible ASCII is
    /// ignored.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        let id = request_id.into();
        if is_valid_request_id(id.as_bytes()) {
            self.inner.request_id = Some(id);
        }
        self
    }

    /// Sets the error this one was made from.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.inner.grpc.changed();
        self.inner.source = Some(Arc::from(source.into()));
        self
    }

    /// The category of the failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The envelope's `type`: the category as a string.
    pub fn error_type(&self) -> &'static str {
        self.inner.kind.error_type()
    }

    /// The envelope's machine-readable `code`.
    pub fn code(&self) -> &str {
        &self.inner.code
    }

    /// The request field the error is about, if any.
    pub fn param(&self) -> Option<&str> {
        self.inner.param.as_deref()
    }

    /// How long to wait before trying again, when the server or a layer said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.hints.retry_after()
    }

    /// The server hints the error carries.
    pub fn hints(&self) -> ServerHints {
        self.inner.hints
    }

    /// Whether trying again may succeed: the server's `x-should-retry` when it
    /// sent one, otherwise the kind's default
    /// ([`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.inner
            .hints
            .should_retry()
            .unwrap_or_else(|| self.inner.kind.is_retryable())
    }

    /// The request id, if one is known.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    /// Which clock ran out, for an error made by [`ApiError::timeout`].
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        self.inner.timeout_phase
    }

    /// The status the upstream answered with, for an error read from an
    /// upstream response.
    pub fn upstream_status(&self) -> Option<StatusCode> {
        self.inner.upstream_status
    }

    /// The start of the upstream's error body (at most the reading cap), for
    /// an error read from an upstream response.
    pub fn upstream_body(&self) -> Option<&Bytes> {
        self.inner.upstream_body.as_ref()
    }

    /// The error this one was made from, if any.
    pub fn source_ref(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.inner.source.as_deref()
    }

    /// Extra values layers attach to the error (the retry layer's attempt
    /// count, say).
    pub fn extensions(&self) -> &http::Extensions {
        &self.inner.extensions
    }

    /// Mutable access to the error's extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.inner.extensions
    }

    /// Records that the error was read from gRPC status `code`, which
    /// [`grpc_code`](Self::grpc_code) then keeps.
    pub(crate) fn set_grpc_code(&mut self, code: i32) {
        self.inner.grpc = GrpcStatus::read(code);
    }

    /// The gRPC code the error was read from, if it was.
    pub(crate) fn read_grpc_code(&self) -> Option<i32> {
        self.inner.grpc.code()
    }

    pub(crate) fn set_upstream(&mut self, status: StatusCode, body: Option<Bytes>) {
        self.inner.upstream_status = Some(status);
        self.inner.upstream_body = body;
    }

    /// Removes `needles` (and key shapes) from everything the error shows:
    /// message, code, param, request id, the upstream body, and the source
    /// (replaced by its cleaned text when its `Debug` output holds one).
    #[cfg(feature = "normalize")]
    pub(crate) fn redact(&mut self, needles: &dyn Needles) {
        let i = &mut *self.inner;
        if redact_str(&i.message, needles).is_some() {
            i.message = sanitize_message(std::mem::take(&mut i.message), needles);
        }
        if let Some(code) = redact_str(&i.code, needles) {
            i.code = Cow::Owned(code);
        }
        for field in [&mut i.param, &mut i.request_id].into_iter().flatten() {
            if let Some(clean) = redact_str(field, needles) {
                *field = clean;
            }
        }
        if let Some(body) = i.upstream_body.as_ref() {
            i.upstream_body = redact_body(body, needles, true).or(i.upstream_body.take());
        }
        if let Some(source) = i.source.as_ref() {
            let debug = format!("{source:?}");
            if holds_secret(debug.as_bytes(), needles, true) {
                // The source's own text, cleaned, stands in for it (and for
                // the errors beneath it).
                let text = source.to_string();
                let text = redact_str(&text, needles).unwrap_or(text);
                i.source = Some(Arc::new(RedactedError(text)));
            }
        }
    }

    #[cfg(feature = "normalize")]
    pub(crate) fn set_request_id_if_absent(&mut self, id: impl FnOnce() -> Option<String>) {
        if self.inner.request_id.is_none() {
            self.inner.request_id = id().filter(|id| is_valid_request_id(id.as_bytes()));
        }
    }

    #[cfg(feature = "normalize")]
    pub(crate) fn replace_request_id(&mut self, id: String) {
        if is_valid_request_id(id.as_bytes()) {
            self.inner.request_id = Some(id);
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut d = f.debug_struct("ApiError");
        d.field("kind", &i.kind)
            .field("status", &i.status)
            .field("code", &i.code)
            .field("message", &i.message);
        if let Some(p) = &i.param {
            d.field("param", p);
        }
        if !i.hints.is_empty() {
            d.field("hints", &i.hints);
        }
        if let Some(id) = &i.request_id {
            d.field("request_id", id);
        }
        if let Some(s) = &i.upstream_status {
            d.field("upstream_status", s);
        }
        if let Some(s) = &i.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.inner.status.as_u16(),
            self.inner.code,
            self.inner.message
        )
    }
}

/// The source chain: the error this one was made from. With the `tonic`
/// feature, the chain starts with the `tonic::Status` the error stands for,
/// so that tonic recovers the right code (see [`ApiError::grpc_code`]).
impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let source = self.inner.source.as_ref();
        self.inner
            .grpc
            .chain(self.grpc_code(), self.message(), source)
    }
}

pub(crate) fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// Cuts a message to [`MAX_MESSAGE_LEN`] and removes credentials from it.
fn sanitize_message(message: Cow<'static, str>, needles: &dyn Needles) -> Cow<'static, str> {
    let message = match redact_str(&message, needles) {
        Some(m) => Cow::Owned(m),
        None => message,
    };
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let kept = crate::util::truncate(&message, MAX_MESSAGE_LEN - '…'.len_utf8());
    Cow::Owned(format!("{kept}…"))
}

#[cfg(test)]
#[path = "api_error_tests.rs"]
mod tests;
