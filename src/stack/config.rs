use std::fmt;
use std::time::Duration;

use crate::circuit_breaker::CircuitBreakerConfig;
use crate::error::fmt_duration;
use crate::retry::{RetryBudget, RetryLayer};
use crate::timeout::{AttemptTimeoutLayer, TimeoutLayer};

/// The settings of the standard stack, with the defaults of the gateway
/// example.
///
/// | setting | default | where it comes from |
/// |---|---|---|
/// | [`max_retries`](Self::max_retries) | 3 | the official OpenAI SDKs retry twice; one more rides out a short burst of 503s |
/// | [`total_timeout`](Self::total_timeout) | 60 s | the seed guides' ordinary-call budget (30–60 s); covers every attempt and the whole body |
/// | [`attempt_timeout`](Self::attempt_timeout) | 30 s | one attempt's wait for its response headers (Token360's standard timeout) |
/// | [`stream_first_byte_timeout`](Self::stream_first_byte_timeout) | 60 s | a model may think a long time before its first token |
/// | [`stream_idle_timeout`](Self::stream_idle_timeout) | 60 s | longer than any pause between tokens or keep-alive comments |
/// | [`stream_timeout`](Self::stream_timeout) | 300 s | the seed guides' streaming budget (120–300 s) |
/// | [`max_retry_after`](Self::max_retry_after) | 60 s | a longer server-requested wait goes back to the caller instead of holding the call |
/// | [`breaker_min_calls`](Self::breaker_min_calls) | 10 | a ratio over fewer calls is noise |
/// | [`breaker_failure_ratio`](Self::breaker_failure_ratio) | 0.5 | half the calls failing is the upstream, not bad luck |
/// | [`breaker_window`](Self::breaker_window) | 30 s | sees a trend at a few calls per second, forgets an incident within a minute |
/// | [`breaker_open`](Self::breaker_open) | 30 s | time for an upstream to recover; doubles on repeated trips (up to 5 min) |
///
/// The stack's retry budget allows one retry per call of the last 10 s on
/// average, plus 10 a second (a plain [`RetryLayer`] keeps Finagle's 20 %):
/// with 3 retries, an upstream failing 37 % of attempts at random needs
/// 0.56 retries per call for retries to rescue almost every call, one
/// failing 60 % needs 1.18. A dead upstream is held off by the breaker,
/// which opens after [`breaker_min_calls`](Self::breaker_min_calls) calls;
/// the budget bounds the retries to at most about twice the calls until
/// then. [`ResilienceLayer::map_retry`](super::ResilienceLayer::map_retry)
/// sets another one.
///
/// [`build`](Self::build) checks that the settings fit together and names
/// the setting that does not.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_http_resilience::stack::ResilienceConfig;
///
/// let err = ResilienceConfig::default()
///     .total_timeout(Duration::from_secs(10))
///     .attempt_timeout(Duration::from_secs(30))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.setting(), "attempt_timeout");
/// assert_eq!(err.to_string(), "invalid attempt_timeout: 30s is longer than total_timeout (10s)");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ResilienceConfig {
    pub(crate) max_retries: u32,
    pub(crate) total_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) stream_first_byte_timeout: Duration,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) stream_timeout: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) breaker_min_calls: u32,
    pub(crate) breaker_failure_ratio: f64,
    pub(crate) breaker_window: Duration,
    pub(crate) breaker_open: Duration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            max_retries: 3,
            total_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(30),
            stream_first_byte_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(60),
            stream_timeout: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(60),
            breaker_min_calls: 10,
            breaker_failure_ratio: 0.5,
            breaker_window: Duration::from_secs(30),
            breaker_open: Duration::from_secs(30),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    )*};
}

impl ResilienceConfig {
    setters! {
        /// Retries after the first attempt.
        max_retries: u32;
        /// Time for a non-streaming call: all attempts, waits and the whole body.
        total_timeout: Duration;
        /// Time for one attempt's response headers.
        attempt_timeout: Duration;
        /// Streaming: time to the first body byte.
        stream_first_byte_timeout: Duration;
        /// Streaming: the longest silence between chunks.
        stream_idle_timeout: Duration;
        /// Streaming: the whole call.
        stream_timeout: Duration;
        /// The longest server-requested wait that is honoured.
        max_retry_after: Duration;
        /// Calls in the window before a breaker may open.
        breaker_min_calls: u32;
        /// The failure ratio that opens a breaker.
        breaker_failure_ratio: f64;
        /// The breakers' rolling window.
        breaker_window: Duration;
        /// How long a breaker first stays open.
        breaker_open: Duration;
    }

    /// Checks the settings and builds the client stack's layer.
    ///
    /// The checks: every duration is above zero; `attempt_timeout` ≤
    /// `total_timeout`; `stream_first_byte_timeout` and `stream_idle_timeout`
    /// ≤ `stream_timeout`; `breaker_window` ≥ `attempt_timeout` (a window
    /// shorter than one attempt forgets failures before it can count
    /// them); `breaker_failure_ratio` in (0, 1]; `breaker_min_calls` ≥ 1;
    /// `max_retries` ≤ 100.
    pub fn build(self) -> Result<super::ResilienceLayer, ConfigError> {
        self.check()?;
        Ok(super::ResilienceLayer::from_config(self))
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for (setting, d) in [
            ("total_timeout", self.total_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("stream_first_byte_timeout", self.stream_first_byte_timeout),
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("stream_timeout", self.stream_timeout),
            ("breaker_window", self.breaker_window),
            ("breaker_open", self.breaker_open),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(setting, "must be longer than zero".into()));
            }
        }
        let longer = |a: &'static str, da: Duration, b: &str, db: Duration| {
            ConfigError::new(
                a,
                format!(
                    "{} is longer than {b} ({})",
                    fmt_duration(da),
                    fmt_duration(db)
                ),
            )
        };
        if self.attempt_timeout > self.total_timeout {
            return Err(longer(
                "attempt_timeout",
                self.attempt_timeout,
                "total_timeout",
                self.total_timeout,
            ));
        }
        if self.stream_first_byte_timeout > self.stream_timeout {
            return Err(longer(
                "stream_first_byte_timeout",
                self.stream_first_byte_timeout,
                "stream_timeout",
                self.stream_timeout,
            ));
        }
        if self.stream_idle_timeout > self.stream_timeout {
            return Err(longer(
                "stream_idle_timeout",
                self.stream_idle_timeout,
                "stream_timeout",
                self.stream_timeout,
            ));
        }
        if self.breaker_window < self.attempt_timeout {
            return Err(ConfigError::new(
                "breaker_window",
                format!(
                    "{} is shorter than attempt_timeout ({}): failures would expire before they are counted",
                    fmt_duration(self.breaker_window),
                    fmt_duration(self.attempt_timeout)
                ),
            ));
        }
        if !(self.breaker_failure_ratio > 0.0 && self.breaker_failure_ratio <= 1.0) {
            return Err(ConfigError::new(
                "breaker_failure_ratio",
                format!("{} is not in (0, 1]", self.breaker_failure_ratio),
            ));
        }
        if self.breaker_min_calls == 0 {
            return Err(ConfigError::new(
                "breaker_min_calls",
                "must be at least 1".into(),
            ));
        }
        if self.max_retries > 100 {
            return Err(ConfigError::new(
                "max_retries",
                format!("{} is more than 100", self.max_retries),
            ));
        }
        Ok(())
    }

    pub(crate) fn timeout_layer(&self) -> TimeoutLayer {
        TimeoutLayer::new()
            .total_timeout(self.total_timeout)
            .stream_first_byte_timeout(self.stream_first_byte_timeout)
            .stream_idle_timeout(self.stream_idle_timeout)
            .stream_timeout(self.stream_timeout)
    }

    pub(crate) fn retry_layer(&self) -> RetryLayer {
        RetryLayer::new()
            .max_retries(self.max_retries)
            .max_retry_after(self.max_retry_after)
            .budget(RetryBudget::new(Duration::from_secs(10), 10, 1.0))
    }

    pub(crate) fn breaker_config(&self) -> CircuitBreakerConfig {
        CircuitBreakerConfig::default()
            .min_calls(self.breaker_min_calls)
            .failure_ratio(self.breaker_failure_ratio)
            .window(self.breaker_window, 10)
            .open_duration(
                self.breaker_open,
                self.breaker_open.max(Duration::from_secs(300)),
                0.1,
            )
    }

    pub(crate) fn attempt_layer(&self) -> AttemptTimeoutLayer {
        AttemptTimeoutLayer::new(self.attempt_timeout)
    }
}

/// A setting of [`ResilienceConfig`] that does not fit with the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    message: String,
}

impl ConfigError {
    fn new(setting: &'static str, message: String) -> Self {
        ConfigError { setting, message }
    }

    /// The name of the setting at fault (as the `ResilienceConfig` method
    /// that sets it).
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        assert!(ResilienceConfig::default().build().is_ok());
    }

    #[test]
    fn each_check_names_its_setting() {
        let d = ResilienceConfig::default;
        let s = Duration::from_secs;
        let cases: Vec<(ResilienceConfig, &str)> = vec![
            (d().total_timeout(Duration::ZERO), "total_timeout"),
            (d().attempt_timeout(s(61)), "attempt_timeout"),
            (
                d().stream_first_byte_timeout(s(301)),
                "stream_first_byte_timeout",
            ),
            (d().stream_idle_timeout(s(301)), "stream_idle_timeout"),
            (d().breaker_window(s(10)), "breaker_window"),
            (d().breaker_failure_ratio(0.0), "breaker_failure_ratio"),
            (d().breaker_failure_ratio(f64::NAN), "breaker_failure_ratio"),
            (d().breaker_failure_ratio(1.5), "breaker_failure_ratio"),
            (d().breaker_min_calls(0), "breaker_min_calls"),
            (d().max_retries(1000), "max_retries"),
            (d().breaker_open(Duration::ZERO), "breaker_open"),
        ];
        for (config, setting) in cases {
            let err = config.build().unwrap_err();
            assert_eq!(err.setting(), setting, "{err}");
            assert!(
                err.to_string().starts_with(&format!("invalid {setting}: ")),
                "{err}"
            );
        }
    }
}
