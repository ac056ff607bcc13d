//! The attempt loop's series: `resilience_attempts_total`,
//! `resilience_retries_total` and `resilience_fallbacks_total`.
//!
//! Each target makes its [`AttemptSeries`] once (its name is a label
//! value), and the loop records through it without building a label per
//! attempt; a move to another target (rare: after a failure) builds its
//! [`FallbackSeries`] when it happens.
// The attempt loop records through these.
#![allow(dead_code)]

use std::collections::HashSet;

use ::metrics::{Key, Label, SharedString};

#[cfg(feature = "retry")]
use super::codes::{bounded_code, retry_key};
use super::record::count;
use super::{ATTEMPTS_TOTAL, FALLBACKS_TOTAL};
#[cfg(feature = "retry")]
use crate::retry::Outcome;
#[cfg(feature = "retry")]
use crate::ErrorKind;

/// How one attempt ended, as `resilience_attempts_total` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptResult {
    /// A response the caller gets as a success.
    Success,
    /// An error, or an error response.
    Failure,
    /// Refused before it left (an open breaker, pacing): nothing was sent.
    NotSent,
}

impl AttemptResult {
    /// The `result` label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::Failure => "failure",
            AttemptResult::NotSent => "not_sent",
        }
    }
}

/// The most distinct target names used as label values; a target named
/// after them is counted as [`OTHER`]. Targets made per call from what a
/// caller sent (a model name, say) cannot grow the series without bound.
pub(crate) const MAX_TARGET_LABELS: usize = 1000;

/// The label value of targets past [`MAX_TARGET_LABELS`].
pub(crate) const OTHER: &str = "other";

/// `target` as a label value: itself while fewer than
/// [`MAX_TARGET_LABELS`] names were seen (or it is one of them), else
/// [`OTHER`].
fn bounded(target: SharedString) -> SharedString {
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    bounded_in(&mut seen.lock().unwrap_or_else(|e| e.into_inner()), target)
}

/// [`bounded`] with the names seen so far in `seen`.
fn bounded_in(seen: &mut HashSet<String>, target: SharedString) -> SharedString {
    if seen.contains(&*target) {
        return target;
    }
    if seen.len() < MAX_TARGET_LABELS {
        seen.insert(target.to_string());
        return target;
    }
    SharedString::const_str(OTHER)
}

/// The attempts of one target, by result.
#[derive(Clone, Debug)]
pub(crate) struct AttemptSeries([Key; 3]);

impl AttemptSeries {
    /// The series of the target named `target`.
    pub(crate) fn new(target: impl Into<SharedString>) -> Self {
        let target = bounded(target.into());
        let key = |result: AttemptResult| {
            let labels = vec![
                Label::new("target", target.clone()),
                Label::from_static_parts("result", result.as_str()),
            ];
            Key::from_parts(ATTEMPTS_TOTAL, labels)
        };
        AttemptSeries(
            [
                AttemptResult::Success,
                AttemptResult::Failure,
                AttemptResult::NotSent,
            ]
            .map(key),
        )
    }

    /// Counts one attempt that ended with `result`.
    pub(crate) fn record(&self, result: AttemptResult) {
        count(&self.0[result as usize]);
    }
}

/// The series of the default target (a loop without targets):
/// `target="default"`.
pub(crate) fn default_attempts() -> &'static AttemptSeries {
    static DEFAULT: std::sync::LazyLock<AttemptSeries> =
        std::sync::LazyLock::new(|| AttemptSeries::new("default"));
    &DEFAULT
}

#[cfg(feature = "retry")]
/// Counts one retry after an attempt that ended with `outcome`: the reason
/// is the error's code, or a response status's default code.
pub(crate) fn retried(outcome: &Outcome<'_>) {
    let code = match (outcome.as_error(), outcome.status()) {
        (Some(err), _) => bounded_code(err),
        (None, Some(status)) => ErrorKind::from_status(status).default_code(),
        (None, None) => ErrorKind::Internal.default_code(),
    };
    count(retry_key(code));
}

/// The moves from one target to another.
#[derive(Clone, Debug)]
pub(crate) struct FallbackSeries(Key);

impl FallbackSeries {
    /// The series of moves from `from` to `to`.
    pub(crate) fn new(from: impl Into<SharedString>, to: impl Into<SharedString>) -> Self {
        let (from, to) = (bounded(from.into()), bounded(to.into()));
        let labels = vec![Label::new("from", from), Label::new("to", to)];
        FallbackSeries(Key::from_parts(FALLBACKS_TOTAL, labels))
    }

    /// Counts one move.
    pub(crate) fn record(&self) {
        count(&self.0);
    }
}

#[cfg(all(test, feature = "retry"))]
mod tests {
    use super::*;
    use crate::ApiError;
    use http::{HeaderMap, StatusCode};
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn the_loop_series_count_what_they_are_told() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let openai = AttemptSeries::new("openai:gpt-4o");
            let backup = AttemptSeries::new(String::from("backup:gpt-4o"));
            openai.record(AttemptResult::Failure);
            openai.record(AttemptResult::Failure);
            openai.record(AttemptResult::NotSent);
            backup.record(AttemptResult::Success);
            let headers = HeaderMap::new();
            retried(&Outcome::response(
                1,
                StatusCode::SERVICE_UNAVAILABLE,
                &headers,
                None,
            ));
            let timeout = ApiError::timeout(
                crate::TimeoutPhase::Attempt,
                std::time::Duration::from_secs(1),
            );
            retried(&Outcome::error(2, &timeout));
            let odd = ApiError::new(ErrorKind::RateLimited).with_code("made_up");
            retried(&Outcome::error(3, &odd));
            FallbackSeries::new("openai:gpt-4o", "backup:gpt-4o").record();
        });
        let text = handle.render();
        for line in [
            r#"resilience_attempts_total{target="openai:gpt-4o",result="failure"} 2"#,
            r#"resilience_attempts_total{target="openai:gpt-4o",result="not_sent"} 1"#,
            r#"resilience_attempts_total{target="backup:gpt-4o",result="success"} 1"#,
            r#"resilience_retries_total{reason="service_unavailable"} 1"#,
            r#"resilience_retries_total{reason="timeout"} 1"#,
            r#"resilience_retries_total{reason="rate_limit_exceeded"} 1"#,
            r#"resilience_fallbacks_total{from="openai:gpt-4o",to="backup:gpt-4o"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("made_up"));
    }

    #[test]
    fn target_labels_are_bounded() {
        let mut seen = HashSet::new();
        let mut label = |name: String| bounded_in(&mut seen, name.into()).to_string();
        for i in 0..MAX_TARGET_LABELS {
            assert_eq!(label(format!("up:model-{i}")), format!("up:model-{i}"));
        }
        assert_eq!(label("up:one-too-many".into()), OTHER);
        // A name seen before keeps its label.
        assert_eq!(label("up:model-0".into()), "up:model-0");
    }
}
