//! Without the `metrics` feature: the recording points of the layers, doing
//! nothing and taking no room.
// Each shim serves a layer that may not be built.
#![allow(dead_code, unused_imports)]

use std::error::Error as StdError;
use std::sync::Arc;

use http::HeaderMap;

use crate::ApiError;

/// A call under way: records nothing.
#[derive(Debug)]
pub(crate) struct CallMeter;

impl CallMeter {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        CallMeter
    }
    #[inline(always)]
    pub(crate) fn success(self) {}
    #[inline(always)]
    pub(crate) fn error(self, _err: &ApiError) {}
    #[inline(always)]
    pub(crate) fn body_error(self, _err: &(dyn StdError + 'static)) {}
    #[inline(always)]
    pub(crate) fn trailers(self, _trailers: &HeaderMap) {}
}

/// A breaker's series: none.
#[cfg(feature = "circuit-breaker")]
#[derive(Debug)]
pub(crate) struct BreakerSeries;

#[cfg(feature = "circuit-breaker")]
impl BreakerSeries {
    #[inline(always)]
    pub(crate) const fn new() -> Self {
        BreakerSeries
    }
    #[inline(always)]
    pub(crate) fn transition<L, N>(
        &self,
        _to: crate::circuit_breaker::CircuitState,
        _label: L,
        _now: N,
    ) {
    }
    #[inline(always)]
    pub(crate) fn forget(&self) {}
}

/// A pacing key's series: none.
#[derive(Debug)]
pub(crate) struct HeldSeries;

impl HeldSeries {
    #[inline(always)]
    pub(crate) const fn new() -> Self {
        HeldSeries
    }
    #[inline(always)]
    pub(crate) fn held(&self, _name: &Arc<str>) {}
}

#[inline(always)]
pub(crate) fn timed_out(_phase: crate::TimeoutPhase) {}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptResult {
    Success,
    Failure,
    NotSent,
}

/// The attempts of one target: none.
#[derive(Clone, Debug)]
pub(crate) struct AttemptSeries;

impl AttemptSeries {
    #[inline(always)]
    pub(crate) fn new<T>(_target: T) -> Self {
        AttemptSeries
    }
    #[inline(always)]
    pub(crate) fn record(&self, _result: AttemptResult) {}
}

/// The default target's attempts: none.
#[inline(always)]
pub(crate) fn default_attempts() -> &'static AttemptSeries {
    &AttemptSeries
}

#[cfg(feature = "retry")]
#[inline(always)]
pub(crate) fn retried(_outcome: &crate::retry::Outcome<'_>) {}

/// The moves from one target to another: none.
#[derive(Clone, Debug)]
pub(crate) struct FallbackSeries;

impl FallbackSeries {
    #[inline(always)]
    pub(crate) fn new<F, T>(_from: F, _to: T) -> Self {
        FallbackSeries
    }
    #[inline(always)]
    pub(crate) fn record(&self) {}
}
