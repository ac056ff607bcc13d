//! Which clock of a call ran out, and how a duration is written in messages.

use std::fmt;
use std::time::Duration;

/// Which clock of a call ran out.
///
/// The message of a [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error
/// built with [`ApiError::timeout`](crate::ApiError::timeout) names the phase.
///
/// ```
/// use tower_http_resilience::TimeoutPhase;
///
/// assert_eq!(TimeoutPhase::FirstByte.to_string(), "first byte");
/// ```
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

    /// The message of a timeout of this phase after `after`.
    pub(super) fn message(self, after: Duration) -> String {
        let after = fmt_duration(after);
        match self {
            TimeoutPhase::Attempt => format!("no response headers within {after}"),
            TimeoutPhase::FirstByte => format!("no first byte of the stream within {after}"),
            TimeoutPhase::Idle => format!("stream idle for longer than {after}"),
            TimeoutPhase::Total => format!("request did not complete within {after}"),
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_like_flags() {
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_duration(Duration::from_micros(20)), "20µs");
    }

    #[test]
    fn messages_name_the_phase() {
        let d = Duration::from_secs(90);
        assert_eq!(
            TimeoutPhase::Idle.message(d),
            "stream idle for longer than 90s"
        );
        assert_eq!(
            TimeoutPhase::Attempt.message(d),
            "no response headers within 90s"
        );
    }
}
