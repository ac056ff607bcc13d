//! `--redis`: the gateway's replicas share what they learnt (breaker trips
//! and closes, the half-open probe) through one Redis server.
//!
//! The store's reachability is said on stderr once each way, exactly
//! `fleet state unavailable: REASON` and `fleet state restored`; meanwhile
//! every call is answered with this replica's own state.

use tower_http_resilience::ResilienceLayer;

/// The namespace every replica of the gateway shares in the store.
#[cfg(feature = "redis")]
const NAMESPACE: &str = "gateway";

/// `layer`, sharing its state through the store at `url` when there is one.
#[cfg(feature = "redis")]
pub fn join(layer: ResilienceLayer, url: Option<&str>) -> Result<ResilienceLayer, String> {
    use tower_http_resilience::fleet::FleetMirror;

    let Some(url) = url else {
        return Ok(layer);
    };
    let mirror = FleetMirror::builder(NAMESPACE)
        .on_notice(|notice| eprintln!("{notice}"))
        .redis(url)
        .map_err(|e| format!("--redis: {e}"))?;
    Ok(layer.fleet(mirror))
}

/// Without the `redis` feature, `--redis` is refused when parsed.
#[cfg(not(feature = "redis"))]
pub fn join(layer: ResilienceLayer, _url: Option<&str>) -> Result<ResilienceLayer, String> {
    Ok(layer)
}
