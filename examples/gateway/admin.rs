//! The admin listener (`--admin-listen`): what an operator watches, on an
//! address of its own, never on `--listen` (there those paths are forwarded
//! like any other).
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok`: the gateway is up (whatever the upstreams do) |
//! | `GET /metrics` | the Prometheus text of every series the stack records |
//! | `GET /breakers` | a JSON array, one object per breaker: `key`, `state`, `calls`, `failures` (in the rolling window), `open_for_ms` (time left open, `null` unless open) |
//! | another path | 404; another method on these paths: 405 |
//!
//! It is an operator's port, bounded all the same: a few connections at a
//! time, each with the gateway's header read and idle timers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http_resilience::circuit_breaker::CircuitBreakerHandle;
use tower_http_resilience::{ApiError, ErrorKind};

use crate::conn::{Activity, IdleStream};
use crate::server::{connection_builder, Limits};

/// Admin connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// A series not updated for this long leaves `/metrics`: keys that come
/// and go (models, pacing keys) do not pile up; one that comes back starts
/// again from zero, which Prometheus reads as a counter reset.
const IDLE_SERIES: Duration = Duration::from_secs(600);

/// How often the recorder folds recent histogram samples in.
const UPKEEP: Duration = Duration::from_secs(5);

/// The buckets of `resilience_call_duration_seconds`: from a cached answer
/// to a five-minute stream.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the Prometheus recorder for the whole process (once) and
/// returns its handle; the stack records into it from then on.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::ALL, Some(IDLE_SERIES))
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "resilience_call_duration_seconds".to_owned(),
                    ),
                    &DURATION_BUCKETS,
                )
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was installed already: /metrics stays empty");
            }
            #[cfg(feature = "metrics")]
            tower_http_resilience::metrics::describe();
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(UPKEEP);
                loop {
                    every.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    metrics: PrometheusHandle,
    breakers: CircuitBreakerHandle,
}

impl Admin {
    pub fn new(metrics: PrometheusHandle, breakers: CircuitBreakerHandle) -> Self {
        Admin { metrics, breakers }
    }

    /// The answer to one admin request.
    pub fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let known = ["/healthz", "/metrics", "/breakers"];
        let path = req.uri().path();
        if !known.contains(&path) {
            return error(ApiError::new(ErrorKind::NotFound).with_message("no such admin path"));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = error(
                ApiError::new(ErrorKind::InvalidRequest)
                    .with_status(StatusCode::METHOD_NOT_ALLOWED)
                    .with_code("method_not_allowed")
                    .with_message("the admin paths answer GET only"),
            );
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        match path {
            "/healthz" => text("text/plain; charset=utf-8", Bytes::from_static(b"ok")),
            "/metrics" => {
                // An open breaker whose time is up turns half-open when it
                // is read: the gauges then show what the next call meets.
                let _ = self.breakers.snapshots();
                self.metrics.run_upkeep();
                let body = Bytes::from(self.metrics.render());
                text("text/plain; version=0.0.4; charset=utf-8", body)
            }
            _ => text("application/json", self.breakers_json()),
        }
    }

    /// Every breaker, by key.
    fn breakers_json(&self) -> Bytes {
        let mut snapshots = self.breakers.snapshots();
        snapshots.sort_by(|a, b| a.key().cmp(b.key()));
        let list: Vec<serde_json::Value> = snapshots
            .iter()
            .map(|s| {
                serde_json::json!({
                    "key": s.key(),
                    "state": s.state().as_str(),
                    "calls": s.calls(),
                    "failures": s.failures(),
                    "open_for_ms": s.open_remaining().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                })
            })
            .collect();
        Bytes::from(serde_json::Value::Array(list).to_string())
    }
}

fn text(content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn error(err: ApiError) -> Response<Full<Bytes>> {
    err.to_response()
}

/// Serves `admin` on `listener` for as long as the process runs.
pub async fn serve(listener: TcpListener, admin: Admin, limits: Limits) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let builder = connection_builder(&limits);
    loop {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let activity = Activity::new(limits.header_read_timeout, limits.idle_timeout);
        let io = TokioIo::new(IdleStream::new(tcp, activity.clone()));
        let admin = admin.clone();
        let service = hyper::service::service_fn(move |req| {
            let _in_flight = activity.enter();
            let res = admin.answer(&req);
            async move { Ok::<_, Infallible>(res) }
        });
        let conn = builder.serve_connection(io, service).into_owned();
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
}
