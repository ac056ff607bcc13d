//! What a caller can put in a request's extensions: the profile marker and
//! the per-request override of the clocks.

use std::time::Duration;

/// Which set of clocks a call runs under.
///
/// Put into a request's extensions, it decides the profile for that call,
/// and no other detection is done: `Profile::Streaming` marks a call as a
/// stream (the first-byte, idle and stream timeouts); `Profile::Ordinary`
/// keeps the single total clock even when the response turns out to be an
/// event stream.
///
/// ```
/// use tower_http_resilience::timeout::Profile;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Profile::Streaming);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// One total timeout over the response headers and the whole body.
    Ordinary,
    /// Time to the first body byte, the longest silence between chunks and
    /// a longer total.
    Streaming,
}

/// Per-request timeouts that replace the layer's for one call.
///
/// Put into a request's extensions, each clock that is set replaces the
/// layer's for that call; the others keep the layer's value. A gateway can
/// scale the timeouts with the request (a longer total for a large
/// `max_tokens`, say). [`TimeoutLayer`](super::TimeoutLayer) reads the
/// total, first-byte, idle and stream timeouts;
/// [`AttemptTimeoutLayer`](super::AttemptTimeoutLayer) reads the attempt
/// timeout.
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::timeout::TimeoutOverride;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(
///     TimeoutOverride::new()
///         .total_timeout(Duration::from_secs(180))
///         .stream_timeout(Duration::from_secs(900)),
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimeoutOverride {
    pub(crate) attempt: Option<Duration>,
    pub(crate) total: Option<Duration>,
    pub(crate) first_byte: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) stream: Option<Duration>,
}

impl TimeoutOverride {
    /// An override that changes nothing.
    pub const fn new() -> Self {
        TimeoutOverride {
            attempt: None,
            total: None,
            first_byte: None,
            idle: None,
            stream: None,
        }
    }

    /// Sets the attempt timeout (one attempt's wait for its response headers) of
    /// [`AttemptTimeoutLayer`](super::AttemptTimeoutLayer).
    pub const fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt = Some(timeout);
        self
    }

    /// Sets the total timeout of an ordinary call (headers and body).
    pub const fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total = Some(timeout);
        self
    }

    /// Sets a streaming call's time to the first body byte.
    pub const fn stream_first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte = Some(timeout);
        self
    }

    /// Sets a streaming call's longest silence between chunks.
    pub const fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = Some(timeout);
        self
    }

    /// Sets a streaming call's total timeout.
    pub const fn stream_timeout(mut self, timeout: Duration) -> Self {
        self.stream = Some(timeout);
        self
    }
}
