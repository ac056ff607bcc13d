use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::status::GrpcStatus;
use super::ErrorKind;
use crate::hint::ServerHints;

/// The longest `message` an error keeps, in bytes; longer ones are cut at a
/// character boundary and end with `…`.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The longest request id kept, in bytes.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Which clock of a call ran out.
///
/// The message of a [`ErrorKind::Timeout`] error built with
/// [`ApiError::timeout`] names the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting for the response headers: one attempt's timeout, or a
    /// streaming call's first-byte clock before its headers arrived.
    Attempt,
    /// Waiting for the first body byte of a streaming response.
    FirstByte,
    /// Waiting for the next chunk of a streaming response.
    Idle,
    /// The whole call, all attempts and the body included.
    Total,
}

impl TimeoutPhase {
    /// A short lower-case name: `attempt`, `first byte`, `idle`, `total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Attempt => "attempt",
            TimeoutPhase::FirstByte => "first byte",
            TimeoutPhase::Idle => "idle",
            TimeoutPhase::Total => "total",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
                message: Cow::Borrowed(default_message(kind)),
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
        let after = fmt_duration(after);
        let message = match phase {
            TimeoutPhase::Attempt => format!("no response headers within {after}"),
            TimeoutPhase::FirstByte => format!("no first byte of the stream within {after}"),
            TimeoutPhase::Idle => format!("stream idle for longer than {after}"),
            TimeoutPhase::Total => format!("request did not complete within {after}"),
        };
        let mut err = ApiError::new(ErrorKind::Timeout).with_message(message);
        err.inner.timeout_phase = Some(phase);
        err
    }

    /// Sets the message shown to people.
    ///
    /// The message is cut to [`MAX_MESSAGE_LEN`] bytes, and anything in it that
    /// looks like a secret (an `sk-…` API key, a `Bearer` token) is masked.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.inner.grpc.changed();
        self.inner.message = sanitize_message(message.into());
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

pub(crate) fn default_message(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "the request is invalid",
        ErrorKind::ContextLengthExceeded => "the request exceeds the model's context length",
        ErrorKind::Authentication => "authentication failed",
        ErrorKind::InsufficientBalance => "insufficient balance",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::NotFound => "not found",
        ErrorKind::RateLimited => "rate limit exceeded",
        ErrorKind::QuotaExhausted => "quota exhausted",
        ErrorKind::Internal => "internal error",
        ErrorKind::Upstream => "the upstream service failed",
        ErrorKind::Unavailable => "the service is unavailable",
        ErrorKind::CircuitOpen => "circuit breaker is open",
        ErrorKind::Timeout => "request timed out",
    }
}

pub(crate) fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// Formats a duration the way the gateway's flags are written: `250ms`, `2s`,
/// `1.5s`, `5m`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        format!("{}µs", d.as_micros())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let frac = format!("{:03}", ms % 1000);
        format!("{}.{}s", ms / 1000, frac.trim_end_matches('0'))
    }
}

/// Cuts a message to [`MAX_MESSAGE_LEN`] and masks secrets in it.
fn sanitize_message(message: Cow<'static, str>) -> Cow<'static, str> {
    let masked = mask_secrets(&message);
    let message = match masked {
        Some(m) => Cow::Owned(m),
        None => message,
    };
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let mut end = MAX_MESSAGE_LEN - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &message[..end]))
}

/// Masks API keys (`sk-…`, `sk_…`) and bearer tokens; `None` when there is
/// nothing to mask.
fn mask_secrets(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    if !(lower.contains("sk-") || lower.contains("sk_") || lower.contains("bearer ")) {
        return None;
    }
    let mut out = String::with_capacity(message.len());
    let mut mask_next = false;
    let mut changed = false;
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let looks_like_key = {
            let w = word.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            (w.starts_with("sk-") || w.starts_with("sk_")) && w.len() >= 8
        };
        if mask_next && word.len() >= 8 || looks_like_key {
            out.push_str("[redacted]");
            changed = true;
        } else {
            out.push_str(word);
        }
        mask_next = word.eq_ignore_ascii_case("bearer");
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let e = ApiError::new(ErrorKind::Authentication)
            .with_message("Incorrect API key provided: sk-proj-abc123def456. Check it.");
        assert_eq!(
            e.message(),
            "Incorrect API key provided: [redacted] Check it."
        );
        let e = ApiError::new(ErrorKind::Authentication)
            .with_message("header was Bearer abcdefghijklmnop");
        assert_eq!(e.message(), "header was Bearer [redacted]");
        let e = ApiError::new(ErrorKind::Authentication).with_message("ask-me later");
        assert_eq!(e.message(), "ask-me later");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "余".repeat(2000);
        let e = ApiError::new(ErrorKind::Internal).with_message(long);
        assert!(e.message().len() <= MAX_MESSAGE_LEN);
        assert!(e.message().ends_with('…'));
    }

    #[test]
    fn durations_format_like_flags() {
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_duration(Duration::from_micros(20)), "20µs");
    }

    #[test]
    fn request_ids_are_validated() {
        let e = ApiError::new(ErrorKind::Internal).with_request_id("abc-123");
        assert_eq!(e.request_id(), Some("abc-123"));
        let e = ApiError::new(ErrorKind::Internal).with_request_id("has space");
        assert_eq!(e.request_id(), None);
        let e = ApiError::new(ErrorKind::Internal).with_request_id("x".repeat(129));
        assert_eq!(e.request_id(), None);
    }

    #[test]
    fn display_is_lower_case_and_compact() {
        let e = ApiError::new(ErrorKind::Unavailable);
        assert_eq!(
            e.to_string(),
            "503 service_unavailable: the service is unavailable"
        );
        assert_eq!(
            std::mem::size_of::<ApiError>(),
            std::mem::size_of::<usize>()
        );
    }
}
