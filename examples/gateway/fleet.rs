//! `--redis`: the gateway's replicas share what they learnt (breaker trips,
//! closes and the half-open probe; holds learnt from the upstreams; each
//! upstream's `rpm`, kept by the fleet as a whole) through one Redis server.
//!
//! The store's reachability is said on stderr once each way, exactly
//! `fleet state unavailable: REASON` and `fleet state restored`; meanwhile
//! every call is answered with this replica's own state.

use crate::stack::StackLayer;

/// The fleet's mirror (with the `redis` feature; a type with no values
/// without it, where `--redis` is refused when parsed).
#[cfg(feature = "redis")]
pub type Mirror = tower_http_resilience::fleet::FleetMirror;
#[cfg(not(feature = "redis"))]
#[derive(Clone, Debug)]
pub enum Mirror {}

/// The namespace every replica of the gateway shares in the store.
#[cfg(feature = "redis")]
const NAMESPACE: &str = "gateway";

/// The mirror of the store at `url`, when there is one. It connects in the
/// background: a store that is down now is said on stderr, not refused.
#[cfg(feature = "redis")]
pub fn connect(url: Option<&str>) -> Result<Option<Mirror>, String> {
    let Some(url) = url else {
        return Ok(None);
    };
    let mirror = Mirror::builder(NAMESPACE)
        .on_notice(|notice| eprintln!("{notice}"))
        .redis(url)
        .map_err(|e| format!("--redis: {e}"))?;
    Ok(Some(mirror))
}

#[cfg(not(feature = "redis"))]
pub fn connect(_url: Option<&str>) -> Result<Option<Mirror>, String> {
    Ok(None)
}

/// `stack`, sharing its breakers and pacing through `mirror`, if any.
pub fn join(stack: StackLayer, mirror: Option<Mirror>) -> StackLayer {
    match mirror {
        #[cfg(feature = "redis")]
        Some(mirror) => stack.fleet(mirror),
        #[cfg(not(feature = "redis"))]
        Some(never) => match never {},
        None => stack,
    }
}
