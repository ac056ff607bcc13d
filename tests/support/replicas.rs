//! Three replicas of a gateway's stack in one process, for the fleet tests:
//! each with its own layers (its own breaker registry and pacing keys) and
//! its own fleet mirror, or none; one scripted upstream they all call, which
//! notes which replica sent each request; and a round-robin driver.
//!
//! A replica's stack is the recommended order without the timeouts:
//! retry (one retry, no backoff) → pacing → circuit breaker → the upstream.
//! The upstream answers as its [`Script`] says: healthy, dead (503) on
//! command, rate limited until an instant on command (429 with
//! `retry-after`), and keeping its own rate (429 past `limit` calls in any
//! 60 seconds).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http_resilience::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
};
use tower_http_resilience::fleet::FleetMirror;
use tower_http_resilience::pacing::{PacingConfig, PacingHandle, PacingLayer};
use tower_http_resilience::retry::{Backoff, RetryLayer};
use tower_http_resilience::{ApiError, BoxError};

use super::plan::Plan;
use super::upstream::{Received, Upstream};

/// The replicas' names, as the upstream sees them (`x-replica`).
pub const NAMES: [&str; 3] = ["a", "b", "c"];

const URL: &str = "http://up.test/v1/chat/completions";

type Body = UnsyncBoxBody<Bytes, BoxError>;
type Svc = BoxCloneService<Request<Full<Bytes>>, Response<Body>, ApiError>;

/// One replica.
pub struct Replica {
    pub svc: Svc,
    pub breakers: CircuitBreakerHandle,
    pub pacing: PacingHandle,
    /// When its breaker first opened, from the driver's start.
    pub opened: Arc<Mutex<Option<Instant>>>,
}

/// The breaker of every replica: opens at half of at least 10 calls in
/// 30 s, for 30 s.
pub fn breaker_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::new()
        .min_calls(10)
        .failure_ratio(0.5)
        .window(Duration::from_secs(30), 30)
        .open_duration(Duration::from_secs(30), Duration::from_secs(300), 0.0)
}

/// A replica calling `upstream`, sharing through `mirror` when given, with
/// `rpm` (0: none) per key.
pub fn replica(
    name: &'static str,
    upstream: &Upstream,
    mirror: Option<FleetMirror>,
    rpm: u32,
) -> Replica {
    let mut breaker = CircuitBreakerLayer::with_config(breaker_config());
    let mut pacing = PacingLayer::with_config(PacingConfig::new().rpm(rpm));
    if let Some(mirror) = mirror {
        breaker = breaker.fleet(mirror.clone());
        pacing = pacing.fleet(mirror);
    }
    let (breakers, paced) = (breaker.handle(), pacing.handle());
    let opened = Arc::new(Mutex::new(None));
    let seen = opened.clone();
    breakers.on_transition(move |t| {
        if t.to() == CircuitState::Open {
            seen.lock().unwrap().get_or_insert_with(Instant::now);
        }
    });
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new()
                .max_retries(1)
                .backoff(Backoff::constant(Duration::ZERO)),
        )
        .layer(pacing)
        .layer(breaker)
        .map_request(move |mut req: Request<_>| {
            req.headers_mut()
                .insert("x-replica", http::HeaderValue::from_static(name));
            req
        })
        .service(upstream.clone())
        .map_response(|res: Response<_>| res.map(|b| b.map_err(Into::into).boxed_unsync()));
    Replica {
        svc: BoxCloneService::new(svc),
        breakers,
        pacing: paced,
        opened,
    }
}

/// Three replicas, with the mirrors given.
pub fn replicas(upstream: &Upstream, mirrors: [Option<FleetMirror>; 3], rpm: u32) -> Vec<Replica> {
    let [a, b, c] = mirrors;
    vec![
        replica(NAMES[0], upstream, a, rpm),
        replica(NAMES[1], upstream, b, rpm),
        replica(NAMES[2], upstream, c, rpm),
    ]
}

/// One call the driver made.
#[derive(Clone, Debug)]
pub struct Call {
    pub replica: usize,
    /// When it was made, from the driver's start.
    pub at: Duration,
    pub latency: Duration,
    /// The status, or the error's code.
    pub outcome: Result<u16, String>,
}

/// Sends one request through `svc` and reads the whole answer.
pub async fn call(svc: Svc) -> Result<u16, String> {
    let req = Request::post(URL)
        .header("authorization", "Bearer sk-fleet-test-0123456789")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    match svc.oneshot(req).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let _ = res.into_body().collect().await;
            Ok(status)
        }
        Err(e) => Err(e.code().to_owned()),
    }
}

/// Makes `calls` calls, one every `every`, to the replicas in turn
/// (starting with `first`); each runs on its own task. Returns every call,
/// once all answered.
pub async fn drive(
    replicas: &[&Replica],
    first: usize,
    every: Duration,
    calls: usize,
) -> Vec<Call> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(calls);
    for i in 0..calls {
        let replica = (first + i) % replicas.len();
        let svc = replicas[replica].svc.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = call(svc).await;
            Call {
                replica,
                at: sent - start,
                latency: sent.elapsed(),
                outcome,
            }
        }));
        tokio::time::sleep_until(start + every * (i as u32 + 1)).await;
    }
    let mut out = Vec::with_capacity(calls);
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// How the scripted upstream answers, changed by the test as it runs.
#[derive(Default)]
struct Mode {
    dead: bool,
    /// Refuses every call before this instant (from the upstream's start).
    limited_until: Option<Duration>,
    /// Its own rate: calls per 60 s, and the calls it admitted.
    limit: Option<usize>,
    admitted: VecDeque<Duration>,
    /// Every call served (200) and refused (429), when it arrived.
    served: Vec<Duration>,
    refused: Vec<Duration>,
    /// How long a success takes.
    delay: Duration,
}

/// The scripted upstream of the fleet tests and its commands.
#[derive(Clone)]
pub struct Script {
    mode: Arc<Mutex<Mode>>,
    pub upstream: Upstream,
    pub start: Instant,
}

impl Script {
    pub fn new() -> Script {
        let mode = Arc::new(Mutex::new(Mode::default()));
        let rule = mode.clone();
        let upstream = Upstream::answering(move |r| answer(&mut rule.lock().unwrap(), r));
        Script {
            mode,
            upstream,
            start: Instant::now(),
        }
    }

    /// Every call fails with 503 (`true`) or is served again.
    pub fn set_dead(&self, dead: bool) {
        self.mode.lock().unwrap().dead = dead;
    }

    /// Every call is answered 429 with `retry-after` until `wait` from now.
    pub fn limit_for(&self, wait: Duration) {
        let until = self.start.elapsed() + wait;
        self.mode.lock().unwrap().limited_until = Some(until);
    }

    /// The upstream keeps to `limit` calls in any 60 s.
    pub fn keep_rate(&self, limit: usize) {
        self.mode.lock().unwrap().limit = Some(limit);
    }

    /// A success takes `delay`.
    pub fn delay(&self, delay: Duration) {
        self.mode.lock().unwrap().delay = delay;
    }

    /// When each call the upstream served (200) arrived.
    pub fn served(&self) -> Vec<Duration> {
        self.mode.lock().unwrap().served.clone()
    }

    /// When each call the upstream refused (429) arrived.
    pub fn refused(&self) -> Vec<Duration> {
        self.mode.lock().unwrap().refused.clone()
    }

    /// Every request the upstream received: who sent it, when (from the
    /// upstream's start).
    pub fn received(&self) -> Vec<(usize, Duration)> {
        self.upstream
            .received()
            .iter()
            .map(|r| (replica_of(r), r.at))
            .collect()
    }

    /// The instant `at` (from the upstream's start).
    pub fn instant(&self, at: Duration) -> Instant {
        self.start + at
    }

    /// `at` as time since the upstream's start.
    pub fn since_start(&self, at: Instant) -> Duration {
        at - self.start
    }
}

fn replica_of(r: &Received) -> usize {
    let name = r
        .header("x-replica")
        .expect("every request names its replica");
    NAMES
        .iter()
        .position(|n| *n == name)
        .expect("a known replica")
}

const LIMITED: &str =
    r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;

fn answer(mode: &mut Mode, r: &Received) -> Plan {
    if mode.dead {
        return Plan::status(503);
    }
    if let Some(until) = mode.limited_until.filter(|&u| r.at < u) {
        let secs = (until - r.at).as_secs_f64().ceil().max(1.0);
        mode.refused.push(r.at);
        return Plan::json(429, LIMITED).header("retry-after", format!("{secs}"));
    }
    if let Some(limit) = mode.limit {
        while mode
            .admitted
            .front()
            .is_some_and(|&t| t + Duration::from_secs(60) <= r.at)
        {
            mode.admitted.pop_front();
        }
        if mode.admitted.len() >= limit {
            let oldest = mode.admitted[0];
            let wait = (oldest + Duration::from_secs(60) - r.at)
                .as_secs_f64()
                .ceil();
            mode.refused.push(r.at);
            return Plan::json(429, LIMITED).header("retry-after", format!("{wait}"));
        }
        mode.admitted.push_back(r.at);
    }
    mode.served.push(r.at);
    Plan::status(200).after(mode.delay)
}
