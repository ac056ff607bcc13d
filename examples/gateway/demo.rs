//! The embedded demo: without `--upstream` or `[[upstream]]` tables, two
//! simulated providers on loopback ports and a route that falls back from
//! one to the other.
//!
//! ```text
//! route: sim-down -> sim, sim-backup:gpt-4o-mini
//! route: * (every other model) -> sim
//! ```
//!
//! `sim` answers with the daily mix of real providers and is dead for
//! `sim-down`; `sim-backup` is steady. A call for `sim-down` is retried on
//! `sim`, then answered by `sim-backup` as `gpt-4o-mini` (at once, once
//! `sim`'s breaker for `sim-down` is open); every other model goes to
//! `sim` alone, so each simulated failure shows as it is.

use crate::log::Log;
use crate::routes::{RouteSpec, ANY_MODEL, SIMULATED};
use crate::sim::{self, Mix};
use crate::upstream::Upstream;

/// The routes over the upstreams [`start`] returns (in [`SIMULATED`]'s
/// order): those of the config file, or the demo's when it names none.
pub fn routes(configured: Vec<RouteSpec>) -> Vec<RouteSpec> {
    if !configured.is_empty() {
        return configured;
    }
    vec![
        RouteSpec {
            model: "sim-down".to_owned(),
            targets: vec![(0, None), (1, Some("gpt-4o-mini".to_owned()))],
            retries: None,
        },
        RouteSpec {
            model: ANY_MODEL.to_owned(),
            targets: vec![(0, None)],
            retries: None,
        },
    ]
}

/// Starts the simulated providers on loopback ports and says so on `log`.
pub async fn start(log: &Log) -> Vec<Upstream> {
    let mut upstreams = Vec::with_capacity(SIMULATED.len());
    for (name, mix) in SIMULATED.into_iter().zip([Mix::Daily, Mix::Steady]) {
        let sim = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the simulator");
        let sim_addr = sim.local_addr().expect("a bound listener has an address");
        tokio::spawn(async move { axum::serve(sim, sim::router(name, mix)).await });
        upstreams.push(Upstream {
            name: name.to_owned(),
            base: format!("http://{sim_addr}")
                .parse()
                .expect("a loopback URL is a base"),
            credential: None,
            rpm: None,
        });
    }
    log.notice(
        "embedded simulated providers (models: gpt-4o-mini, sim-down, sim-stall, sim-slow, \
         sim-reset, sim-quota, sim-overloaded, sim-badkey); sim-down is dead on sim and \
         falls back to sim-backup, which is steady",
    );
    upstreams
}
