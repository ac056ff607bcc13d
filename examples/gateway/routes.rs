//! Where a call goes: the upstreams, the routes from a model to its
//! ordered targets ([`Routes::targets_for`]), and the models' context
//! windows.
//!
//! A route names, for a model a client asks for, the targets to try in
//! order; `"*"` is the route of every model no other route names. Without
//! a route for a model (and no `"*"`), every upstream is a target, in the
//! order given, with the model unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use tower_http_resilience::check::ContextWindow;

use crate::target::RouteTarget;
use crate::upstream::Upstream;

/// The route of every model no other route names.
pub const ANY_MODEL: &str = "*";

/// The embedded simulator's providers, when no upstream is given.
pub const SIMULATED: [&str; 2] = ["sim", "sim-backup"];

/// A route as configured: the model a client asks for (or [`ANY_MODEL`])
/// and its targets, each an upstream (by its index) and the model sent
/// there (`None`: the model asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub model: String,
    pub targets: Vec<(usize, Option<String>)>,
    /// Retries on each target (default: the gateway's `max_retries`).
    pub retries: Option<u32>,
}

/// A route's step: an upstream, with the model it is sent as.
#[derive(Clone, Debug)]
struct Hop {
    upstream: Arc<Upstream>,
    /// `None`: the model asked for.
    model: Option<Arc<str>>,
    /// `None`: the gateway's `max_retries`.
    retries: Option<u32>,
}

/// The routing table: built once, read by every call.
#[derive(Debug)]
pub struct Routes {
    upstreams: Vec<Arc<Upstream>>,
    by_model: HashMap<String, Vec<Hop>>,
    any_model: Option<Vec<Hop>>,
    /// Every upstream in order, the model unchanged.
    every: Vec<Hop>,
    windows: HashMap<String, ContextWindow>,
}

impl Routes {
    /// The table of `upstreams` (at least one), `routes` (whose upstream
    /// indexes are indexes of `upstreams`) and the models' `windows`.
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        routes: &[RouteSpec],
        windows: HashMap<String, ContextWindow>,
    ) -> Self {
        assert!(!upstreams.is_empty(), "a gateway has an upstream");
        let every = upstreams
            .iter()
            .map(|upstream| Hop {
                upstream: upstream.clone(),
                model: None,
                retries: None,
            })
            .collect();
        let mut by_model: HashMap<String, Vec<Hop>> = routes
            .iter()
            .map(|route| {
                let hops = route
                    .targets
                    .iter()
                    .map(|(index, model)| Hop {
                        upstream: upstreams[*index].clone(),
                        model: model.as_deref().map(Into::into),
                        retries: route.retries,
                    })
                    .collect();
                (route.model.clone(), hops)
            })
            .collect();
        let any_model = by_model.remove(ANY_MODEL);
        Routes {
            upstreams,
            by_model,
            any_model,
            every,
            windows,
        }
    }

    /// The upstreams, in the order given.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// Every number of retries a target may have, each once (`None`: the
    /// gateway's `max_retries`).
    pub fn retries(&self) -> Vec<Option<u32>> {
        let mut all: Vec<Option<u32>> = self
            .by_model
            .values()
            .chain(self.any_model.as_ref())
            .chain([&self.every])
            .flatten()
            .map(|hop| hop.retries)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The context windows of the models, by the name sent upstream.
    pub fn windows(&self) -> &HashMap<String, ContextWindow> {
        &self.windows
    }

    /// The hops of the route `model` takes.
    fn hops(&self, model: Option<&str>) -> &[Hop] {
        model
            .and_then(|m| self.by_model.get(m))
            .or(self.any_model.as_ref())
            .unwrap_or(&self.every)
    }

    /// The targets of a call for `model` (the JSON body's, if any), in the
    /// order they are tried; never empty.
    pub fn targets_for(&self, model: Option<&str>) -> Vec<RouteTarget> {
        self.hops(model)
            .iter()
            .map(|hop| {
                let sent = hop.model.as_deref().or(model);
                let name = match sent {
                    Some(m) => format!("{}:{m}", hop.upstream.name),
                    None => hop.upstream.name.clone(),
                };
                RouteTarget {
                    name: name.into(),
                    upstream: hop.upstream.clone(),
                    rename: hop.model.clone().filter(|m| Some(&**m) != model),
                    retries: hop.retries,
                    context_window: sent.and_then(|m| self.windows.get(m)).copied(),
                }
            })
            .collect()
    }

    /// What the routes are, one line each, for the start-up notices.
    pub fn describe(&self) -> Vec<String> {
        let line = |model: &str, hops: &[Hop]| {
            let targets: Vec<String> = hops
                .iter()
                .map(|h| match &h.model {
                    Some(m) => format!("{}:{m}", h.upstream.name),
                    None => h.upstream.name.clone(),
                })
                .collect();
            format!("route: {model} -> {}", targets.join(", "))
        };
        let mut lines: Vec<String> = self
            .by_model
            .iter()
            .map(|(model, hops)| line(model, hops))
            .collect();
        lines.sort();
        lines.push(line(
            "* (every other model)",
            self.any_model.as_deref().unwrap_or(&self.every),
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Credential;

    fn upstream(name: &str, key: Option<&str>) -> Arc<Upstream> {
        Arc::new(Upstream {
            name: name.into(),
            base: format!("http://{name}.example/v1").parse().unwrap(),
            credential: key.map(|k| Credential::bearer(k).unwrap()),
            rpm: None,
        })
    }

    fn route(model: &str, targets: &[(usize, Option<&str>)], retries: Option<u32>) -> RouteSpec {
        RouteSpec {
            model: model.into(),
            targets: targets
                .iter()
                .map(|(i, m)| (*i, m.map(Into::into)))
                .collect(),
            retries,
        }
    }

    fn names(targets: &[RouteTarget]) -> Vec<&str> {
        targets.iter().map(|t| &*t.name).collect()
    }

    #[test]
    fn a_model_takes_its_route_then_any_model_then_every_upstream() {
        let (a, b) = (upstream("a", Some("sk-a-0123456789")), upstream("b", None));
        let windows = HashMap::from([("small".to_owned(), ContextWindow::from(1000))]);
        let routes = Routes::new(
            vec![a.clone(), b.clone()],
            &[route("gpt-4o", &[(0, None), (1, Some("small"))], Some(1))],
            windows.clone(),
        );
        let t = routes.targets_for(Some("gpt-4o"));
        assert_eq!(names(&t), ["a:gpt-4o", "b:small"]);
        assert_eq!(
            (t[0].rename.as_deref(), t[1].rename.as_deref()),
            (None, Some("small"))
        );
        assert_eq!((t[0].retries, t[1].retries), (Some(1), Some(1)));
        assert_eq!(t[1].context_window.unwrap().tokens(), 1000);
        assert!(t[0].context_window.is_none());
        // No route and no "*": every upstream, model unchanged.
        let t = routes.targets_for(Some("small"));
        assert_eq!(names(&t), ["a:small", "b:small"]);
        assert!(t.iter().all(|t| t.rename.is_none() && t.retries.is_none()));
        assert_eq!(t[0].context_window.unwrap().tokens(), 1000);
        assert_eq!(names(&routes.targets_for(None)), ["a", "b"]);
        assert_eq!(routes.retries(), [None, Some(1)]);

        let with_any = Routes::new(
            vec![a.clone(), b.clone()],
            &[route("*", &[(1, None)], Some(0))],
            windows,
        );
        assert_eq!(names(&with_any.targets_for(Some("x"))), ["b:x"]);
        assert_eq!(with_any.describe(), ["route: * (every other model) -> b"]);
        // A rename to the model asked for is no rename.
        let same = Routes::new(
            vec![a.clone()],
            &[route("m", &[(0, Some("m"))], None)],
            HashMap::new(),
        );
        assert!(same.targets_for(Some("m"))[0].rename.is_none());
    }
}
