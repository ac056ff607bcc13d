//! [`TimeoutLayer`] and [`AttemptTimeoutLayer`]: the settings the timeout
//! services share.

use std::time::Duration;

/// The default total timeout of an ordinary call: 60 s.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The default time to the first body byte of a streaming call: 60 s.
pub const DEFAULT_STREAM_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default longest silence between two chunks of a stream: 60 s.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default total timeout of a streaming call: 300 s.
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// The default attempt timeout (one attempt's wait for its response
/// headers): 30 s.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a JSON request body is read, by default, to find
/// `"stream": true`: 64 KiB.
pub const DEFAULT_BODY_PEEK_LIMIT: usize = 64 * 1024;

/// Streaming-aware timeouts for a whole call: headers *and* body.
///
/// Each call runs under one of two profiles (see the [module
/// docs](super) for how the profile is chosen and a picture of the clocks):
///
/// | profile | clock | default | error phase |
/// |---|---|---|---|
/// | ordinary | total: headers and the whole body | 60 s | [`Total`](crate::TimeoutPhase::Total) |
/// | streaming | first byte: headers and the first body data | 60 s | [`Attempt`](crate::TimeoutPhase::Attempt) / [`FirstByte`](crate::TimeoutPhase::FirstByte) |
/// | streaming | idle: the longest silence between chunks | 60 s | [`Idle`](crate::TimeoutPhase::Idle) |
/// | streaming | stream timeout: the whole stream | 300 s | [`Total`](crate::TimeoutPhase::Total) |
///
/// Every clock starts when the call starts. The layer also publishes the
/// instant by which the response headers must arrive as the call's
/// [`Deadline`](crate::deadline::Deadline), so a retry layer inside it never
/// waits past it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::TimeoutLayer;
///
/// let layer = TimeoutLayer::new()
///     .total_timeout(Duration::from_secs(30))
///     .stream_idle_timeout(Duration::from_secs(20))
///     .stream_timeout(Duration::from_secs(600));
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    pub(crate) total: Duration,
    pub(crate) first_byte: Duration,
    pub(crate) idle: Duration,
    pub(crate) stream: Duration,
    pub(crate) comments_are_activity: bool,
    pub(crate) peek_limit: usize,
    pub(crate) publish_deadline: bool,
    pub(crate) grpc_timeout: bool,
}

impl TimeoutLayer {
    /// A layer with the default clocks: ordinary total 60 s; streaming first
    /// byte 60 s, idle 60 s, total 300 s. SSE comment lines count as
    /// activity, JSON request bodies are peeked up to 64 KiB, the deadline
    /// is published, `grpc-timeout` is not set.
    pub const fn new() -> Self {
        TimeoutLayer {
            total: DEFAULT_TOTAL_TIMEOUT,
            first_byte: DEFAULT_STREAM_FIRST_BYTE_TIMEOUT,
            idle: DEFAULT_STREAM_IDLE_TIMEOUT,
            stream: DEFAULT_STREAM_TIMEOUT,
            comments_are_activity: true,
            peek_limit: DEFAULT_BODY_PEEK_LIMIT,
            publish_deadline: true,
            grpc_timeout: false,
        }
    }

    /// Sets the total timeout of an ordinary call: response headers and the
    /// whole body must arrive within it.
    ///
    /// It also bounds the wait for the headers of a call whose profile is
    /// not known before its response.
    pub const fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total = timeout;
        self
    }

    /// Sets a streaming call's time to its first body data (measured from
    /// the start of the call, so it covers the headers too).
    pub const fn stream_first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte = timeout;
        self
    }

    /// Sets a streaming call's longest silence between two chunks.
    pub const fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }

    /// Sets a streaming call's total timeout.
    pub const fn stream_timeout(mut self, timeout: Duration) -> Self {
        self.stream = timeout;
        self
    }

    /// Sets whether a chunk that holds only SSE comment lines (`: keep-alive`)
    /// counts as activity: the first byte of a stream, and a reset of the
    /// idle clock. On by default; when off, an upstream that only sends
    /// keep-alive comments times out as idle.
    pub const fn sse_comments_are_activity(mut self, yes: bool) -> Self {
        self.comments_are_activity = yes;
        self
    }

    /// Sets how many bytes of a JSON request body are read to find
    /// `"stream": true` (64 KiB by default); `0` turns body detection off.
    ///
    /// Only a request with a JSON content type and a non-empty body is read.
    /// The bytes read are handed to the inner service first, then the rest
    /// of the body, so it receives the same bytes. A `"stream"` key past the
    /// limit is not seen; such a call is ordinary unless its response is an
    /// event stream.
    pub const fn body_peek_limit(mut self, bytes: usize) -> Self {
        self.peek_limit = bytes;
        self
    }

    /// Sets whether the instant by which the response headers are due is
    /// set as the call's [`Deadline`](crate::deadline::Deadline) (on by
    /// default), in the call's context in the request's extensions, for
    /// the layers inside this one: a retry layer reads the deadline, a
    /// circuit breaker learns from the context when this timeout cut the
    /// call short, and this timeout's error then carries the attempts a
    /// retry layer inside sent.
    ///
    /// The context costs one allocation per call, and three more when the
    /// request's extensions are empty; turn it off when nothing inside
    /// reads it.
    pub const fn publish_deadline(mut self, yes: bool) -> Self {
        self.publish_deadline = yes;
        self
    }

    /// Sets whether a gRPC request (`content-type: application/grpc…`) gets a
    /// `grpc-timeout` header with the longest time the call may take, so the
    /// server can give up too (off by default). An earlier `grpc-timeout`
    /// already on the request is kept.
    pub const fn set_grpc_timeout(mut self, yes: bool) -> Self {
        self.grpc_timeout = yes;
        self
    }
}

impl Default for TimeoutLayer {
    fn default() -> Self {
        TimeoutLayer::new()
    }
}

/// The attempt timeout: a timeout on the response headers only, for one
/// attempt.
///
/// Meant to sit inside a retry layer (and inside a circuit breaker), so a
/// hung attempt fails with a retryable 504 whose phase is
/// [`Attempt`](crate::TimeoutPhase::Attempt), and the next attempt starts.
/// Once the headers are in, the body is passed on untouched: bounding it is
/// the job of the outer [`TimeoutLayer`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::timeout::AttemptTimeoutLayer;
///
/// let attempt_timeout = AttemptTimeoutLayer::new(Duration::from_secs(30));
/// # let _ = attempt_timeout;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AttemptTimeoutLayer {
    pub(crate) timeout: Duration,
}

impl AttemptTimeoutLayer {
    /// A layer that fails an attempt whose headers take longer than
    /// `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        AttemptTimeoutLayer { timeout }
    }
}

impl Default for AttemptTimeoutLayer {
    /// A 30 s attempt timeout.
    fn default() -> Self {
        AttemptTimeoutLayer::new(DEFAULT_ATTEMPT_TIMEOUT)
    }
}
