//! Metrics: what the layers record through the [`metrics`](https://docs.rs/metrics)
//! facade.
//!
//! The crate installs no exporter: an application installs the recorder it
//! wants (Prometheus, StatsD, OpenTelemetry, …) and every layer records
//! into it; without one, recording costs a few nanoseconds and keeps
//! nothing. [`describe`] gives the recorder each series' help text and
//! unit.
//!
//! # The series
//!
//! | series | type | labels | recorded by | when |
//! |---|---|---|---|---|
//! | `resilience_calls_total` | counter | `outcome`, `code` | [`NormalizeLayer`](crate::NormalizeLayer), [`NormalizeClientLayer`](crate::NormalizeClientLayer) (both flavours of [`ResilienceLayer`](crate::ResilienceLayer)) | once per call, when its outcome is known: an error answered, the end of a response body (a stream when it ends or fails), or the caller gone |
//! | `resilience_call_duration_seconds` | histogram | `outcome` | the same | the same: from the call to the end of its response body |
//! | `resilience_breaker_state` | gauge | `key` | [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) | set on every transition: 0 closed, 1 open, 2 half-open; set to 0 when the key is forgotten |
//! | `resilience_breaker_transitions_total` | counter | `key`, `to` | the same | every transition |
//! | `resilience_timeouts_total` | counter | `phase` | [`TimeoutLayer`](crate::TimeoutLayer), [`AttemptTimeoutLayer`](crate::AttemptTimeoutLayer) | every clock that runs out |
//! | `resilience_held_total` | counter | `key` | [`PacingLayer`](crate::PacingLayer) | every call held back (it waited) or refused without being sent |
//! | `resilience_attempts_total` | counter | `target`, `result` | the attempt loop ([`RetryLayer`](crate::RetryLayer), [`FallbackLayer`](crate::FallbackLayer)) | every attempt of a call, on every target, when its result is known (a stream at its commit point); in a loop nested in another, by the inner one only |
//! | `resilience_retries_total` | counter | `reason` | the attempt loop | every retry, by what the attempt before it ended with |
//! | `resilience_fallbacks_total` | counter | `from`, `to` | the attempt loop | every move from one target to the next |
//!
//! The labels and their values:
//!
//! | label | values |
//! |---|---|
//! | `outcome` | `success` (the response was not an error and its body ended), `error` (an error response, or a body that failed), `cancelled` (the caller dropped the call or its body first) |
//! | `code` | the envelope's `code` (`timeout`, `circuit_open`, `rate_limit_exceeded`, …; a code the crate does not know counts as its kind's default), `none` for a success, `client_closed` for a cancelled call |
//! | `reason` | the `code` the retried attempt ended with (a response's is its status's default code) |
//! | `result` | `success`, `failure`, `not_sent` (refused before it left: an open breaker, pacing) |
//! | `phase` | `attempt`, `first_byte`, `idle`, `total` |
//! | `to` | `closed`, `open`, `half-open` |
//! | `key` | a breaker's key as its [`KeyDisplay`](crate::circuit_breaker::KeyDisplay) shows it (hashed by default, since a key may be a credential; no `key` series for `Redacted`); a pacing key's name (a credential in it is hashed) |
//! | `target`, `from`, `to` (fallbacks) | the names of the targets (at most 1000 distinct names a process; targets named after them count as `other`); `default` for a loop without targets |
//!
//! Every label value comes from a bounded set: codes from the crate's list,
//! keys from the registries, which hold at most `max_keys` keys each.
//!
//! # The breaker gauge is never stale
//!
//! `resilience_breaker_state{key}` is one series per key whose value is the
//! state (not one series per state): an alert on `== 1` fires while the
//! breaker is open and stops when it closes. The series appears with the
//! key's first transition. The `metrics` facade cannot remove a series, so
//! when the registry forgets a key (idle, evicted, reset) its gauge is set
//! to 0, which is what a forgotten key is: its next call starts a closed
//! breaker. An exporter keeps such zeroed series until it forgets them
//! itself (`metrics-exporter-prometheus`: `idle_timeout`).
//!
//! # Cost
//!
//! Label values are never built per call: the series of static labels are
//! static keys; a breaker's and a pacing key's series are built once, when
//! first recorded, and kept with the key; a target's attempt series when
//! the target is made. A move to another target (after a failure) builds
//! its label pair then. A call costs two reads of a cheap
//! clock of its own ([`quanta`](https://docs.rs/quanta): the CPU's
//! time-stamp counter where it is stable; tokio's paused clock does not move
//! it) and one look-up of the recorder; with a no-op recorder the preset
//! pays about 30 ns per call for the feature.
//!
//! # Example
//!
//! A client stack whose calls are read back from a Prometheus recorder
//! (`metrics-exporter-prometheus`; here installed for this thread only):
//!
//! ```
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use tower::{Layer, ServiceExt};
//! use tower_http_resilience::stack::StackBody;
//! use tower_http_resilience::ResilienceLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let prometheus = recorder.handle();
//! let _local = metrics::set_default_local_recorder(&recorder);
//! tower_http_resilience::metrics::describe();
//!
//! let upstream = tower::service_fn(|_req: http::Request<StackBody<String>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::builder().status(503).body(String::new()).unwrap())
//! });
//! let client = ResilienceLayer::new().map_retry(|r| r.max_retries(0)).layer(upstream);
//! let err = client.oneshot(http::Request::new(String::new())).await.unwrap_err();
//! assert_eq!(err.code(), "service_unavailable");
//!
//! let text = prometheus.render();
//! assert!(text.contains(r#"resilience_calls_total{outcome="error",code="service_unavailable"} 1"#));
//! # }
//! ```

// A build with few layers leaves the recording points of the others idle.
#![cfg_attr(not(feature = "full"), allow(dead_code))]

mod attempts;
#[cfg(feature = "circuit-breaker")]
mod breaker;
mod call;
mod codes;
mod held;
mod record;
mod timeouts;

// What each layer records through: a build with some layers only leaves
// the others' idle.
#[allow(unused_imports)]
#[cfg(feature = "retry")]
pub(crate) use attempts::retried;
#[allow(unused_imports)]
pub(crate) use attempts::{default_attempts, AttemptResult, AttemptSeries, FallbackSeries};
#[cfg(feature = "circuit-breaker")]
pub(crate) use breaker::BreakerSeries;
#[allow(unused_imports)]
pub(crate) use call::CallMeter;
#[allow(unused_imports)]
pub(crate) use held::HeldSeries;
#[allow(unused_imports)]
pub(crate) use timeouts::timed_out;

/// Calls by outcome and code (counter; labels `outcome`, `code`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::CALLS_TOTAL, "resilience_calls_total");
/// ```
pub const CALLS_TOTAL: &str = "resilience_calls_total";

/// How long calls took, to the end of their response body (histogram, in
/// seconds; label `outcome`).
///
/// ```
/// use tower_http_resilience::metrics::CALL_DURATION_SECONDS;
/// assert_eq!(CALL_DURATION_SECONDS, "resilience_call_duration_seconds");
/// ```
pub const CALL_DURATION_SECONDS: &str = "resilience_call_duration_seconds";

/// Attempts by target and result (counter; labels `target`, `result`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::ATTEMPTS_TOTAL, "resilience_attempts_total");
/// ```
pub const ATTEMPTS_TOTAL: &str = "resilience_attempts_total";

/// Retries by the code the attempt before them ended with (counter; label
/// `reason`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::RETRIES_TOTAL, "resilience_retries_total");
/// ```
pub const RETRIES_TOTAL: &str = "resilience_retries_total";

/// Moves from one target to the next (counter; labels `from`, `to`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::FALLBACKS_TOTAL, "resilience_fallbacks_total");
/// ```
pub const FALLBACKS_TOTAL: &str = "resilience_fallbacks_total";

/// The state of each breaker: 0 closed, 1 open, 2 half-open (gauge; label
/// `key`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::BREAKER_STATE, "resilience_breaker_state");
/// ```
pub const BREAKER_STATE: &str = "resilience_breaker_state";

/// Breaker transitions by key and new state (counter; labels `key`, `to`).
///
/// ```
/// use tower_http_resilience::metrics::BREAKER_TRANSITIONS_TOTAL;
/// assert_eq!(BREAKER_TRANSITIONS_TOTAL, "resilience_breaker_transitions_total");
/// ```
pub const BREAKER_TRANSITIONS_TOTAL: &str = "resilience_breaker_transitions_total";

/// Timeouts by the clock that ran out (counter; label `phase`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::TIMEOUTS_TOTAL, "resilience_timeouts_total");
/// ```
pub const TIMEOUTS_TOTAL: &str = "resilience_timeouts_total";

/// Calls pacing held back or refused without sending them (counter; label
/// `key`).
///
/// ```
/// assert_eq!(tower_http_resilience::metrics::HELD_TOTAL, "resilience_held_total");
/// ```
pub const HELD_TOTAL: &str = "resilience_held_total";

/// Tells the installed recorder what each series means and its unit (the
/// `# HELP` lines of a Prometheus exporter). Call it once, after installing
/// the recorder; series are recorded whether or not it was called.
///
/// ```
/// // With a recorder installed first:
/// tower_http_resilience::metrics::describe();
/// ```
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(CALLS_TOTAL, "Calls by outcome and error code.");
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a call to the end of its response body, by outcome."
    );
    describe_counter!(ATTEMPTS_TOTAL, "Attempts by target and result.");
    describe_counter!(
        RETRIES_TOTAL,
        "Retries, by the code the attempt before ended with."
    );
    describe_counter!(FALLBACKS_TOTAL, "Moves from one target to the next.");
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state by key: 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS_TOTAL,
        "Circuit breaker transitions by key and new state."
    );
    describe_counter!(TIMEOUTS_TOTAL, "Timeouts by the clock that ran out.");
    describe_counter!(
        HELD_TOTAL,
        "Calls held back or refused unsent by pacing, by key."
    );
}
