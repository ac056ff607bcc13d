//! Recording into whatever recorder is installed, with keys made ahead.

use ::metrics::{Key, Level, Metadata};

/// Where the crate's series come from, as recorders see it.
static METADATA: Metadata<'static> = Metadata::new(
    "tower_http_resilience",
    Level::INFO,
    Some("tower_http_resilience"),
);

/// Adds one to the counter `key`.
#[inline]
pub(crate) fn count(key: &Key) {
    ::metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
}

/// Sets the gauge `key` to `value`.
#[inline]
pub(crate) fn set(key: &Key, value: f64) {
    ::metrics::with_recorder(|r| r.register_gauge(key, &METADATA).set(value));
}

/// Adds one to the counter `calls` and records `value` in the histogram
/// `time`: a call's two series, with one look-up of the recorder.
#[inline]
pub(crate) fn count_and_observe(calls: &Key, time: &Key, value: f64) {
    ::metrics::with_recorder(|r| {
        r.register_counter(calls, &METADATA).increment(1);
        r.register_histogram(time, &METADATA).record(value);
    });
}
