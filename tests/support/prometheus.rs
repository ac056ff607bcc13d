//! A Prometheus recorder for one test, and the series read back from its
//! text.

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

/// A Prometheus recorder of this test alone.
pub fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

/// The value of the series `name{labels}` (labels in any order) in the
/// exported text, if it is there.
pub fn value(handle: &PrometheusHandle, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = handle.render();
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, mut have) = match series.split_once('{') {
                Some((n, rest)) => (
                    n,
                    rest.trim_end_matches('}')
                        .split(',')
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                ),
                None => (series, Vec::new()),
            };
            have.sort();
            (series_name == name && have == want).then(|| value.parse().unwrap())
        })
}

/// The calls counted with this outcome and code.
pub fn calls(handle: &PrometheusHandle, outcome: &str, code: &str) -> Option<f64> {
    let labels = [("outcome", outcome), ("code", code)];
    value(handle, "resilience_calls_total", &labels)
}

/// The lines of the series `name` (every label set).
pub fn series(handle: &PrometheusHandle, name: &str) -> Vec<String> {
    handle
        .render()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(str::to_owned)
        .collect()
}
