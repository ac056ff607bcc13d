//! The gateway's resilience stack: the crate's standard stack with the
//! fallback across a call's targets in the retry layer's place, pacing
//! between it and the breaker, and the configured keys masked.
//!
//! ```text
//! normalize (upstream and client keys as secrets) → total timeout
//!   → fallback (the attempt loop over the call's targets)
//!   → [reaches pacing] → pacing → circuit breaker → [sent] → attempt
//!   timeout → the upstream client
//! ```
//!
//! One stack serves every route: the call's targets travel in the
//! request's extensions ([`Targets`], put there by the forwarder), and
//! each target's name is its breaker key, so breakers and pacing are
//! shared by every call that goes to the same upstream and model.
//!
//! Pacing sits inside the attempt loop, so every attempt is paced (a
//! retry after a 429 waits for its key like any call; with another target
//! left, a held key sends the call on at once), and outside the breaker,
//! so a held call takes no breaker admission. The [`Trace`] tells the
//! gateway what the outcome's extensions cannot: the attempts actually
//! sent (none when every target's breaker was open or pacing refused the
//! call, where the library's count says one) and how long pacing held
//! the call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::request::Parts;
use http::Request;
use tokio::time::Instant;
use tower::util::{MapRequest, MapRequestLayer};
use tower::Layer;
use tower_http_resilience::circuit_breaker::{
    ByAuthority, ByExtension, CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer,
    ExtractKeyExt, GlobalKey,
};
use tower_http_resilience::fallback::{FallbackLayer, Targets};
use tower_http_resilience::pacing::{
    ByCredential, Pacing, PacingConfig, PacingHandle, PacingLayer,
};
use tower_http_resilience::retry::{Retry, RetryLayer};
use tower_http_resilience::stack::{DefaultKey, StackBody};
use tower_http_resilience::timeout::{AttemptTimeout, AttemptTimeoutLayer, Timeout, TimeoutLayer};
use tower_http_resilience::{Normalize, NormalizeLayer, ResilienceConfig};

use crate::client::{ForwardedBody, UpstreamClient};

/// A request as an attempt sends it.
type Attempt = Request<StackBody<ForwardedBody>>;
/// A mark on an attempt.
type Mark = fn(Attempt) -> Attempt;

/// The stack around the upstream client.
pub type Stack = Normalize<
    Timeout<
        Retry<
            MapRequest<
                Pacing<
                    CircuitBreaker<MapRequest<AttemptTimeout<UpstreamClient>, Mark>, DefaultKey>,
                    ByCredential,
                >,
                Mark,
            >,
        >,
    >,
>;

/// The layers of [`Stack`]; the pacing and breaker state live in it and
/// are shared by every stack it builds.
#[derive(Clone, Debug)]
pub struct StackLayer {
    normalize: NormalizeLayer,
    timeout: TimeoutLayer,
    retry: RetryLayer,
    pacing: PacingLayer,
    breaker: CircuitBreakerLayer<DefaultKey>,
    attempt: AttemptTimeoutLayer,
}

impl StackLayer {
    /// The stack of `config` (checked), pacing with `pacing`, and every
    /// one of `secrets` masked in what the clients get back.
    pub fn new<'a>(
        config: &ResilienceConfig,
        pacing: PacingConfig,
        secrets: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        StackLayer {
            normalize: secrets
                .into_iter()
                .fold(NormalizeLayer::new(), NormalizeLayer::secret),
            timeout: config.timeout_layer(),
            retry: config.retry_layer(),
            pacing: PacingLayer::with_config(pacing),
            breaker: CircuitBreakerLayer::with_config(config.breaker_config())
                .key(ByExtension.or(ByAuthority).or(GlobalKey)),
            attempt: config.attempt_layer(),
        }
    }

    /// Adjusts the attempt loop (backoff, jitter, replay limit, …).
    pub fn map_retry(mut self, f: impl FnOnce(RetryLayer) -> RetryLayer) -> Self {
        self.retry = f(self.retry);
        self
    }

    /// The same stack, its breakers and pacing shared with the other
    /// replicas through `mirror` (`--redis`).
    #[cfg(feature = "fleet")]
    #[allow(dead_code)] // tests without the `redis` feature
    pub fn fleet(mut self, mirror: tower_http_resilience::fleet::FleetMirror) -> Self {
        self.pacing = self.pacing.fleet(mirror.clone());
        self.breaker = self.breaker.fleet(mirror);
        self
    }

    /// The breakers: their states and transitions.
    pub fn breaker_handle(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }

    /// What pacing holds.
    #[allow(dead_code)] // for an admin endpoint
    pub fn pacing_handle(&self) -> PacingHandle {
        self.pacing.handle()
    }
}

impl Layer<UpstreamClient> for StackLayer {
    type Service = Stack;

    fn layer(&self, client: UpstreamClient) -> Stack {
        let mark_sent = Trace::mark_sent::<StackBody<ForwardedBody>> as Mark;
        let mark_reached = Trace::mark_reached::<StackBody<ForwardedBody>> as Mark;
        let service = self.attempt.layer(client);
        let service = MapRequestLayer::new(mark_sent).layer(service);
        let service = self.breaker.layer(service);
        let service = self.pacing.layer(service);
        let service = MapRequestLayer::new(mark_reached).layer(service);
        let fallback = FallbackLayer::new(targets_of as fn(&Parts) -> Targets);
        let service = fallback.retry(self.retry.clone()).layer(service);
        let service = self.timeout.layer(service);
        self.normalize.layer(service)
    }
}

/// The targets of a call: those the forwarder put in its extensions.
fn targets_of(parts: &Parts) -> Targets {
    parts
        .extensions
        .get::<Targets>()
        .cloned()
        .unwrap_or_default()
}

/// What the stack did with a call, over all its attempts: put in the
/// request's extensions before the call (every attempt shares it).
#[derive(Debug, Default)]
pub struct Trace {
    /// When the attempt under way reached pacing, the attempts sent, and
    /// the time pacing held them back.
    state: Mutex<(Option<Instant>, u32, Duration)>,
}

impl Trace {
    /// The attempts sent to the upstream.
    pub fn sent(&self) -> u32 {
        self.lock().1
    }

    /// The time pacing held the call back.
    pub fn held(&self) -> Duration {
        self.lock().2
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, u32, Duration)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An attempt reaches pacing.
    fn mark_reached<B>(req: Request<B>) -> Request<B> {
        if let Some(trace) = req.extensions().get::<Arc<Trace>>() {
            trace.lock().0 = Some(Instant::now());
        }
        req
    }

    /// An attempt passed pacing and the breaker: it is sent.
    fn mark_sent<B>(req: Request<B>) -> Request<B> {
        if let Some(trace) = req.extensions().get::<Arc<Trace>>() {
            let mut state = trace.lock();
            state.1 += 1;
            if let Some(reached) = state.0.take() {
                state.2 += reached.elapsed();
            }
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_trace_counts_what_was_sent_and_how_long_it_was_held() {
        let trace = Arc::new(Trace::default());
        let attempt = || {
            let mut req = Request::new(());
            req.extensions_mut().insert(trace.clone());
            req
        };
        let req = Trace::mark_reached(attempt());
        tokio::time::advance(Duration::from_millis(1500)).await;
        Trace::mark_sent(req);
        // Refused by pacing or the breaker: not sent, not held.
        let _ = Trace::mark_reached(attempt());
        let req = Trace::mark_reached(attempt());
        tokio::time::advance(Duration::from_millis(500)).await;
        Trace::mark_sent(req);
        assert_eq!(
            (trace.sent(), trace.held()),
            (2, Duration::from_millis(2000))
        );
    }
}
