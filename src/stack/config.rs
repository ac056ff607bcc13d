use std::fmt;
use std::time::Duration;

use crate::circuit_breaker::{CircuitBreakerConfig, KeyDisplay};
use crate::error::fmt_duration;
use crate::pacing::PacingConfig;
use crate::retry::{RetryBudget, RetryLayer};
use crate::timeout::{AttemptTimeoutLayer, TimeoutLayer};

/// The settings of the standard stack, with the defaults of the gateway
/// example.
///
/// Each default is the one of the layer the setting goes to, so a layer
/// used alone and the stack agree:
///
/// | setting | default | why |
/// |---|---|---|
/// | [`max_retries`](Self::max_retries) | 3 | the official OpenAI SDKs retry twice; one more rides out a short burst of 503s |
/// | [`total_timeout`](Self::total_timeout) | 60 s | an ordinary call, every attempt and the whole body, ends within a minute |
/// | [`attempt_timeout`](Self::attempt_timeout) | 30 s | one attempt's wait for its response headers; half the total leaves time for a retry |
/// | [`stream_first_byte_timeout`](Self::stream_first_byte_timeout) | 60 s | a model may think a long time before its first token |
/// | [`stream_idle_timeout`](Self::stream_idle_timeout) | 60 s | longer than any pause between tokens or keep-alive comments |
/// | [`stream_timeout`](Self::stream_timeout) | 300 s | a long streamed answer ends within five minutes |
/// | [`max_retry_after`](Self::max_retry_after) | 60 s | a longer server-requested wait (or pacing hold) goes back to the caller instead of holding the call |
/// | [`breaker_min_calls`](Self::breaker_min_calls) | 10 | a ratio over fewer calls is noise |
/// | [`breaker_failure_ratio`](Self::breaker_failure_ratio) | 0.5 | half the calls failing is the upstream, not bad luck |
/// | [`breaker_window`](Self::breaker_window) | 30 s | sees a trend at a few calls per second, forgets an incident within a minute |
/// | [`breaker_open_duration`](Self::breaker_open_duration) | 30 s | time for an upstream to recover; doubles on repeated trips (up to 5 min) |
/// | [`breaker_key_display`](Self::breaker_key_display) | hashed | how events and metrics show a breaker's key: a key may be a credential |
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
    pub(crate) breaker_open_duration: Duration,
    pub(crate) breaker_key_display: KeyDisplay,
}

impl Default for ResilienceConfig {
    /// The layers' own defaults (see the table above).
    fn default() -> Self {
        let breaker = CircuitBreakerConfig::default();
        ResilienceConfig {
            max_retries: crate::retry::DEFAULT_MAX_RETRIES,
            total_timeout: crate::timeout::DEFAULT_TOTAL_TIMEOUT,
            attempt_timeout: crate::timeout::DEFAULT_ATTEMPT_TIMEOUT,
            stream_first_byte_timeout: crate::timeout::DEFAULT_STREAM_FIRST_BYTE_TIMEOUT,
            stream_idle_timeout: crate::timeout::DEFAULT_STREAM_IDLE_TIMEOUT,
            stream_timeout: crate::timeout::DEFAULT_STREAM_TIMEOUT,
            max_retry_after: crate::retry::DEFAULT_MAX_RETRY_AFTER,
            breaker_min_calls: breaker.min_calls,
            breaker_failure_ratio: breaker.failure_ratio,
            breaker_window: breaker.window,
            breaker_open_duration: breaker.open_duration,
            breaker_key_display: breaker.key_display,
        }
    }
}

/// A by-value setter per setting, each with a doctest that sets `$example`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $example:expr;)*) => {$(
        $(#[$doc])*
        ///
        /// ```
        /// use std::time::Duration;
        /// use tower_http_resilience::stack::ResilienceConfig;
        ///
        #[doc = concat!(
            "let layer = ResilienceConfig::default().",
            stringify!($name), "(", stringify!($example), ").build();"
        )]
        /// assert!(layer.is_ok());
        /// # let _ = Duration::ZERO;
        /// ```
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    )*};
}

impl ResilienceConfig {
    setters! {
        /// Sets the number of retries after the first attempt.
        max_retries: u32 = 2;
        /// Sets the time for a non-streaming call: all attempts, waits and
        /// the whole body.
        total_timeout: Duration = Duration::from_secs(120);
        /// Sets the time for one attempt's response headers.
        attempt_timeout: Duration = Duration::from_secs(10);
        /// Sets a streaming call's time to its first body byte.
        stream_first_byte_timeout: Duration = Duration::from_secs(30);
        /// Sets a streaming call's longest silence between chunks.
        stream_idle_timeout: Duration = Duration::from_secs(20);
        /// Sets a streaming call's total time.
        stream_timeout: Duration = Duration::from_secs(600);
        /// Sets the longest server-requested wait that is honoured.
        max_retry_after: Duration = Duration::from_secs(10);
        /// Sets the number of calls in the window before a breaker may open.
        breaker_min_calls: u32 = 20;
        /// Sets the failure ratio that opens a breaker.
        breaker_failure_ratio: f64 = 0.25;
        /// Sets the breakers' rolling window.
        breaker_window: Duration = Duration::from_secs(60);
        /// Sets how long a breaker stays open after its first trip.
        breaker_open_duration: Duration = Duration::from_secs(10);
    }

    /// Sets how `tracing` events and metrics show the breakers' keys
    /// ([`KeyDisplay`]): keys the caller chose that are safe to show (model
    /// names, hosts) can be shown plain.
    ///
    /// ```
    /// use tower_http_resilience::circuit_breaker::KeyDisplay;
    /// use tower_http_resilience::stack::ResilienceConfig;
    ///
    /// // Breakers keyed by model name.
    /// let layer = ResilienceConfig::default().breaker_key_display(KeyDisplay::Plain).build();
    /// assert!(layer.is_ok());
    /// ```
    pub fn breaker_key_display(mut self, display: KeyDisplay) -> Self {
        self.breaker_key_display = display;
        self
    }

    /// Checks that the settings fit together; the error names the first
    /// that does not (see [`build`](Self::build) for the checks).
    ///
    /// For a stack assembled from the layers one by one
    /// ([`timeout_layer`](Self::timeout_layer) and the others), which
    /// [`build`](Self::build) does not check.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_resilience::stack::ResilienceConfig;
    ///
    /// assert!(ResilienceConfig::default().check().is_ok());
    /// let err = ResilienceConfig::default().stream_timeout(Duration::ZERO).check().unwrap_err();
    /// assert_eq!(err.setting(), "stream_timeout");
    /// ```
    pub fn check(&self) -> Result<(), ConfigError> {
        for (setting, d) in [
            ("total_timeout", self.total_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("stream_first_byte_timeout", self.stream_first_byte_timeout),
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("stream_timeout", self.stream_timeout),
            ("breaker_window", self.breaker_window),
            ("breaker_open_duration", self.breaker_open_duration),
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

    /// The total timeout layer of the stack: `total_timeout` and the three
    /// streaming clocks.
    ///
    /// With [`retry_layer`](Self::retry_layer),
    /// [`breaker_config`](Self::breaker_config) and
    /// [`attempt_layer`](Self::attempt_layer), the parts of the stack for
    /// one assembled by hand, with a layer of its own between two of them
    /// ([`check`](Self::check) the config first):
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_http_resilience::circuit_breaker::CircuitBreakerLayer;
    /// use tower_http_resilience::stack::{ResilienceConfig, StackBody};
    /// use tower_http_resilience::NormalizeLayer;
    ///
    /// let config = ResilienceConfig::default();
    /// config.check().unwrap();
    /// let upstream = tower::service_fn(|_req: http::Request<StackBody<String>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// });
    /// let gateway = ServiceBuilder::new()
    ///     .layer(NormalizeLayer::new())
    ///     .layer(config.timeout_layer())
    ///     .layer(config.retry_layer())
    ///     // a layer of one's own between the retry and the breaker
    ///     .layer(tower::util::MapRequestLayer::new(|req: http::Request<StackBody<String>>| req))
    ///     .layer(CircuitBreakerLayer::with_config(config.breaker_config()))
    ///     .layer(config.attempt_layer())
    ///     .service(upstream);
    /// # let _ = gateway;
    /// ```
    pub fn timeout_layer(&self) -> TimeoutLayer {
        TimeoutLayer::new()
            .total_timeout(self.total_timeout)
            .stream_first_byte_timeout(self.stream_first_byte_timeout)
            .stream_idle_timeout(self.stream_idle_timeout)
            .stream_timeout(self.stream_timeout)
    }

    /// The retry layer of the stack: `max_retries`, `max_retry_after` and
    /// the stack's budget (a new one at each call: layers made by two calls
    /// share no budget). See [`timeout_layer`](Self::timeout_layer).
    pub fn retry_layer(&self) -> RetryLayer {
        RetryLayer::new()
            .max_retries(self.max_retries)
            .max_retry_after(self.max_retry_after)
            .budget(RetryBudget::new(Duration::from_secs(10), 10, 1.0))
    }

    /// The breaker's settings: the four `breaker_*` settings and the key
    /// display, the breaker's defaults for the rest (buckets, longest open
    /// time, jitter, …). See [`timeout_layer`](Self::timeout_layer).
    pub fn breaker_config(&self) -> CircuitBreakerConfig {
        let defaults = CircuitBreakerConfig::default();
        let (buckets, max_open, jitter) = (
            defaults.buckets,
            defaults.max_open_duration,
            defaults.open_jitter,
        );
        defaults
            .min_calls(self.breaker_min_calls)
            .failure_ratio(self.breaker_failure_ratio)
            .window(self.breaker_window, buckets)
            .open_duration(self.breaker_open_duration, max_open, jitter)
            .key_display(self.breaker_key_display)
    }

    /// The pacing settings of the stack: the longest wait it holds a call
    /// is `max_retry_after`, as the retry layer's; the rest are pacing's
    /// defaults. See [`timeout_layer`](Self::timeout_layer).
    pub fn pacing_config(&self) -> PacingConfig {
        PacingConfig::new().max_retry_after(self.max_retry_after)
    }

    /// The attempt timeout layer of the stack: `attempt_timeout`. See
    /// [`timeout_layer`](Self::timeout_layer).
    pub fn attempt_layer(&self) -> AttemptTimeoutLayer {
        AttemptTimeoutLayer::new(self.attempt_timeout)
    }
}

/// A setting of [`ResilienceConfig`] that does not fit with the others.
///
/// ```
/// use tower_http_resilience::stack::ResilienceConfig;
///
/// let err = ResilienceConfig::default().breaker_min_calls(0).build().unwrap_err();
/// assert_eq!(err.setting(), "breaker_min_calls");
/// assert_eq!(err.to_string(), "invalid breaker_min_calls: must be at least 1");
/// ```
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_resilience::stack::ResilienceConfig;
    ///
    /// let err = ResilienceConfig::default().stream_timeout(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.setting(), "stream_timeout");
    /// ```
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
    fn the_defaults_are_the_layers_own() {
        let c = ResilienceConfig::default();
        assert_eq!(c.breaker_config(), CircuitBreakerConfig::default());
        assert_eq!(
            format!("{:?}", c.timeout_layer()),
            format!("{:?}", TimeoutLayer::new())
        );
        assert_eq!(
            format!("{:?}", c.attempt_layer()),
            format!("{:?}", AttemptTimeoutLayer::default())
        );
        let budget = std::sync::Arc::new(crate::retry::RetryBudget::default());
        assert_eq!(
            format!("{:?}", c.retry_layer().budget(budget.clone())),
            format!("{:?}", RetryLayer::new().budget(budget))
        );
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
            (
                d().breaker_open_duration(Duration::ZERO),
                "breaker_open_duration",
            ),
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
