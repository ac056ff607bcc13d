use http::StatusCode;

/// The category of a failure: one row of the canonical envelope table.
///
/// Each kind has a canonical HTTP status, an envelope `type`, a default `code`,
/// a default retry decision and a default circuit-breaker decision. The
/// [`ApiError`](crate::ApiError) that carries a kind may override the status
/// (an upstream `405` stays a `405` of kind [`InvalidRequest`]) and the code
/// (a known upstream code is kept).
///
/// | kind | status | `type` | default `code` | retried | breaker failure |
/// |---|---|---|---|---|---|
/// | [`InvalidRequest`] | 400 | `invalid_request_error` | `invalid_value` | no | no |
/// | [`ContextLengthExceeded`] | 400 | `invalid_request_error` | `context_length_exceeded` | no | no |
/// | [`Authentication`] | 401 | `authentication_error` | `invalid_api_key` | no | no |
/// | [`InsufficientBalance`] | 402 | `billing_error` | `insufficient_balance` | no | no |
/// | [`PermissionDenied`] | 403 | `permission_error` | `permission_denied` | no | no |
/// | [`NotFound`] | 404 | `not_found_error` | `not_found` | no | no |
/// | [`RateLimited`] | 429 | `rate_limit_error` | `rate_limit_exceeded` | yes | no |
/// | [`QuotaExhausted`] | 429 | `insufficient_quota` | `insufficient_quota` | no | no |
/// | [`Internal`] | 500 | `api_error` | `internal_error` | yes | yes |
/// | [`Upstream`] | 502 | `upstream_error` | `upstream_error` | yes | yes |
/// | [`Unavailable`] | 503 | `service_unavailable` | `service_unavailable` | yes | yes |
/// | [`CircuitOpen`] | 503 | `service_unavailable` | `circuit_open` | no | no |
/// | [`Timeout`] | 504 | `timeout_error` | `timeout` | yes | yes |
///
/// [`InvalidRequest`]: ErrorKind::InvalidRequest
/// [`ContextLengthExceeded`]: ErrorKind::ContextLengthExceeded
/// [`Authentication`]: ErrorKind::Authentication
/// [`InsufficientBalance`]: ErrorKind::InsufficientBalance
/// [`PermissionDenied`]: ErrorKind::PermissionDenied
/// [`NotFound`]: ErrorKind::NotFound
/// [`RateLimited`]: ErrorKind::RateLimited
/// [`QuotaExhausted`]: ErrorKind::QuotaExhausted
/// [`Internal`]: ErrorKind::Internal
/// [`Upstream`]: ErrorKind::Upstream
/// [`Unavailable`]: ErrorKind::Unavailable
/// [`CircuitOpen`]: ErrorKind::CircuitOpen
/// [`Timeout`]: ErrorKind::Timeout
///
/// # Example
///
/// ```
/// use tower_http_resilience::ErrorKind;
///
/// let kind = ErrorKind::from_status(http::StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(kind, ErrorKind::RateLimited);
/// assert_eq!(kind.error_type(), "rate_limit_error");
/// assert!(kind.is_retryable());
/// assert!(!kind.is_breaker_failure());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or names something unsupported.
    InvalidRequest,
    /// The prompt and requested output do not fit the model's context.
    ContextLengthExceeded,
    /// The credentials are missing, invalid, expired or revoked.
    Authentication,
    /// The account has no balance or credits left.
    InsufficientBalance,
    /// The credentials are valid but may not do this.
    PermissionDenied,
    /// The route, model or resource does not exist.
    NotFound,
    /// Too many requests (or too many at once); waiting helps.
    RateLimited,
    /// The quota is used up; waiting a few seconds does not help.
    QuotaExhausted,
    /// The service failed internally.
    Internal,
    /// The upstream failed, answered garbage, or could not be reached.
    Upstream,
    /// The service is unavailable or overloaded.
    Unavailable,
    /// A circuit breaker is open and rejected the call without sending it.
    CircuitOpen,
    /// A timeout expired.
    Timeout,
}

impl ErrorKind {
    /// Every kind, in table order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::Authentication,
        ErrorKind::InsufficientBalance,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::RateLimited,
        ErrorKind::QuotaExhausted,
        ErrorKind::Internal,
        ErrorKind::Upstream,
        ErrorKind::Unavailable,
        ErrorKind::CircuitOpen,
        ErrorKind::Timeout,
    ];

    /// The canonical HTTP status of this kind.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::RateLimited | ErrorKind::QuotaExhausted => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable | ErrorKind::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The envelope's `type` for this kind.
    pub const fn error_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::InsufficientBalance => "billing_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::QuotaExhausted => "insufficient_quota",
            ErrorKind::Internal => "api_error",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Unavailable | ErrorKind::CircuitOpen => "service_unavailable",
            ErrorKind::Timeout => "timeout_error",
        }
    }

    /// The envelope's `code` when nothing more precise is known.
    pub const fn default_code(self) -> &'static str {
        self.known_codes()[0]
    }

    /// The codes an error of this kind may carry; the first is the default.
    ///
    /// A code an upstream sends is kept when it is in this list.
    pub const fn known_codes(self) -> &'static [&'static str] {
        match self {
            ErrorKind::InvalidRequest => &[
                "invalid_value",
                "missing_required_field",
                "model_not_supported",
                "invalid_json",
                "method_not_allowed",
                "request_too_large",
                "unsupported_media_type",
                "conflict",
            ],
            ErrorKind::ContextLengthExceeded => &["context_length_exceeded"],
            ErrorKind::Authentication => &["invalid_api_key", "expired_api_key", "revoked_api_key"],
            ErrorKind::InsufficientBalance => &["insufficient_balance"],
            ErrorKind::PermissionDenied => {
                &["permission_denied", "model_access_denied", "api_key_frozen"]
            }
            ErrorKind::NotFound => &["not_found", "model_not_found"],
            ErrorKind::RateLimited => &["rate_limit_exceeded", "concurrent_limit_exceeded"],
            ErrorKind::QuotaExhausted => &["insufficient_quota"],
            ErrorKind::Internal => &["internal_error"],
            ErrorKind::Upstream => &["upstream_error", "connection_error"],
            ErrorKind::Unavailable => &["service_unavailable", "overloaded"],
            ErrorKind::CircuitOpen => &["circuit_open"],
            ErrorKind::Timeout => &["timeout"],
        }
    }

    /// Whether an error of this kind is retried by default.
    ///
    /// A server's `x-should-retry` header overrides this for one error; see
    /// [`ApiError::is_retryable`](crate::ApiError::is_retryable).
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Internal
                | ErrorKind::Upstream
                | ErrorKind::Unavailable
                | ErrorKind::Timeout
        )
    }

    /// Whether an error of this kind counts against a circuit breaker.
    ///
    /// Only failures that say something about the upstream's health count:
    /// 5xx, connection errors and timeouts. Client errors, rate limits and the
    /// breaker's own rejections do not.
    pub const fn is_breaker_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Internal | ErrorKind::Upstream | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    /// The generic message of an error of this kind.
    pub(crate) const fn default_message(self) -> &'static str {
        match self {
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

    /// The kind an HTTP error status means before its body is read.
    ///
    /// Statuses below 400 have no kind and map to [`ErrorKind::Internal`] so
    /// that the function is total; callers check the status first.
    pub fn from_status(status: StatusCode) -> ErrorKind {
        match status.as_u16() {
            401 => ErrorKind::Authentication,
            402 => ErrorKind::InsufficientBalance,
            403 => ErrorKind::PermissionDenied,
            404 | 410 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::InvalidRequest,
            502 | 520..=527 => ErrorKind::Upstream,
            503 | 529 => ErrorKind::Unavailable,
            504 | 598 | 599 => ErrorKind::Timeout,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_known_codes_and_unique_per_kind() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.known_codes()[0], kind.default_code());
            assert!(kind.status().as_u16() >= 400);
        }
    }

    #[test]
    fn table_rows() {
        use ErrorKind::*;
        let rows = [
            (
                InvalidRequest,
                400,
                "invalid_request_error",
                "invalid_value",
                false,
                false,
            ),
            (
                ContextLengthExceeded,
                400,
                "invalid_request_error",
                "context_length_exceeded",
                false,
                false,
            ),
            (
                Authentication,
                401,
                "authentication_error",
                "invalid_api_key",
                false,
                false,
            ),
            (
                InsufficientBalance,
                402,
                "billing_error",
                "insufficient_balance",
                false,
                false,
            ),
            (
                PermissionDenied,
                403,
                "permission_error",
                "permission_denied",
                false,
                false,
            ),
            (NotFound, 404, "not_found_error", "not_found", false, false),
            (
                RateLimited,
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                true,
                false,
            ),
            (
                QuotaExhausted,
                429,
                "insufficient_quota",
                "insufficient_quota",
                false,
                false,
            ),
            (Internal, 500, "api_error", "internal_error", true, true),
            (
                Upstream,
                502,
                "upstream_error",
                "upstream_error",
                true,
                true,
            ),
            (
                Unavailable,
                503,
                "service_unavailable",
                "service_unavailable",
                true,
                true,
            ),
            (
                CircuitOpen,
                503,
                "service_unavailable",
                "circuit_open",
                false,
                false,
            ),
            (Timeout, 504, "timeout_error", "timeout", true, true),
        ];
        for (kind, status, ty, code, retry, breaker) in rows {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.error_type(), ty, "{kind:?}");
            assert_eq!(kind.default_code(), code, "{kind:?}");
            assert_eq!(kind.is_retryable(), retry, "{kind:?}");
            assert_eq!(kind.is_breaker_failure(), breaker, "{kind:?}");
        }
    }

    #[test]
    fn statuses() {
        let s = |n| ErrorKind::from_status(StatusCode::from_u16(n).unwrap());
        assert_eq!(s(400), ErrorKind::InvalidRequest);
        assert_eq!(s(422), ErrorKind::InvalidRequest);
        assert_eq!(s(408), ErrorKind::Timeout);
        assert_eq!(s(529), ErrorKind::Unavailable);
        assert_eq!(s(501), ErrorKind::Internal);
        assert_eq!(s(524), ErrorKind::Upstream);
    }
}
