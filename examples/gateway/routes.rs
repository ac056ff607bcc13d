//! Where a call goes: the upstreams, the routes from a model to its
//! ordered targets ([`Routes::targets_for`], the library's fallback
//! [`Target`]s), and the models' context windows.
//!
//! A route names, for a model a client asks for, the targets to try in
//! order; `"*"` is the route of every model no other route names. Without
//! a route for a model (and no `"*"`), every upstream is a target, in the
//! order given, with the model unchanged.
//!
//! Each target is named `UPSTREAM:MODEL` (the model sent there), which is
//! also its breaker key and part of its pacing key; it joins the client's
//! path onto the upstream's URL, sends the upstream's credential in place
//! of the client's (when the upstream has one), renames the JSON body's
//! `model` when the route says so, paces at the upstream's `rpm`, and
//! carries its retries and its model's context window.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use tower_http_resilience::check::{CheckLayer, ContextWindow};
use tower_http_resilience::fallback::{Target, Targets};
use tower_http_resilience::pacing::Rpm;

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
    /// The routes of the models they name, their targets built.
    by_model: HashMap<String, (Vec<Hop>, Targets)>,
    /// The route of every other model ("*", or every upstream in order,
    /// the model unchanged): its targets are named after the model asked
    /// for, so they are built per call.
    other: Vec<Hop>,
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
        let hops = |route: &RouteSpec| -> Vec<Hop> {
            route
                .targets
                .iter()
                .map(|(index, model)| Hop {
                    upstream: upstreams[*index].clone(),
                    model: model.as_deref().map(Into::into),
                    retries: route.retries,
                })
                .collect()
        };
        let every = upstreams
            .iter()
            .map(|upstream| Hop {
                upstream: upstream.clone(),
                model: None,
                retries: None,
            })
            .collect();
        let other = routes
            .iter()
            .find(|r| r.model == ANY_MODEL)
            .map_or(every, hops);
        let by_model = routes
            .iter()
            .filter(|r| r.model != ANY_MODEL)
            .map(|route| {
                let hops = hops(route);
                let targets = targets(&hops, Some(&route.model), &windows);
                (route.model.clone(), (hops, targets))
            })
            .collect();
        Routes {
            upstreams,
            by_model,
            other,
            windows,
        }
    }

    /// The upstreams, in the order given.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The targets of a call for `model` (the JSON body's, if any), in the
    /// order they are tried; never empty.
    pub fn targets_for(&self, model: Option<&str>) -> Targets {
        match model.and_then(|m| self.by_model.get(m)) {
            Some((_, targets)) => targets.clone(),
            None => targets(&self.other, model, &self.windows),
        }
    }

    /// The request checks, with the context window of each model whose
    /// calls have one target only: that target's window, whose check
    /// answers 400 `context_length_exceeded` with the prompt's count. A
    /// call with several targets is checked against each target's window
    /// as the fallback walks them (a target whose window is too small is
    /// skipped; 400 when none fits).
    pub fn checks(&self) -> CheckLayer {
        let lone = |hops: &[Hop], asked: &str| match hops {
            [hop] => self.windows.get(hop.model.as_deref().unwrap_or(asked)),
            _ => None,
        };
        let named = self
            .by_model
            .iter()
            .filter_map(|(model, (hops, _))| Some((model.as_str(), *lone(hops, model)?)));
        // Every other model is sent as asked when the route keeps it.
        let kept = matches!(&*self.other, [hop] if hop.model.is_none());
        let others = self
            .windows
            .iter()
            .filter(|(model, _)| kept && !self.by_model.contains_key(*model))
            .map(|(model, window)| (model.as_str(), *window));
        named
            .chain(others)
            .fold(CheckLayer::new(), |checks, (model, window)| {
                checks.context_window(model, window)
            })
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
            .map(|(model, (hops, _))| line(model, hops))
            .collect();
        lines.sort();
        lines.push(line("* (every other model)", &self.other));
        lines
    }
}

/// The targets of `hops` for a call that asked for `asked`.
fn targets(hops: &[Hop], asked: Option<&str>, windows: &HashMap<String, ContextWindow>) -> Targets {
    hops.iter()
        .map(|hop| {
            let sent = hop.model.as_deref().or(asked);
            let name = match sent {
                Some(m) => format!("{}:{m}", hop.upstream.name),
                None => hop.upstream.name.clone(),
            };
            let upstream = &hop.upstream;
            let mut target = Target::new(name.clone())
                .base_uri(upstream.base.clone())
                .key(name);
            if let Some(credential) = &upstream.credential {
                target = target.credential(AUTHORIZATION, credential.header().clone());
            }
            if let Some(model) = hop.model.as_deref().filter(|&m| Some(m) != asked) {
                target = target.model(model);
            }
            if let Some(retries) = hop.retries {
                target = target.retries(retries);
            }
            if let Some(window) = sent.and_then(|m| windows.get(m)) {
                target = target.context_window(*window);
            }
            if let Some(rpm) = upstream.rpm {
                target = target.extension(Rpm(rpm));
            }
            target
        })
        .collect()
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

    fn names(targets: &Targets) -> Vec<&str> {
        targets.iter().map(Target::name).collect()
    }

    /// What a target's `Debug` shows of one setting (never a credential).
    fn shows(target: &Target, setting: &str) -> bool {
        format!("{target:?}").contains(setting)
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
        let (first, second) = (&t.iter().next().unwrap(), &t.iter().nth(1).unwrap());
        assert!(shows(first, "model: None") && shows(second, "model: Some(\"small\")"));
        assert!(shows(first, "retries: Some(1)") && shows(second, "retries: Some(1)"));
        assert!(shows(first, "context_window: None"));
        assert!(shows(second, "tokens: 1000"));
        assert!(shows(first, "authorization") && !shows(first, "sk-a-"));
        assert!(!shows(second, "authorization"), "b passes the client's key");
        // No route and no "*": every upstream, model unchanged.
        let t = routes.targets_for(Some("small"));
        assert_eq!(names(&t), ["a:small", "b:small"]);
        assert!(t.iter().all(|t| shows(t, "model: None")
            && shows(t, "retries: None")
            && shows(t, "tokens: 1000")));
        assert_eq!(names(&routes.targets_for(None)), ["a", "b"]);

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
        assert!(shows(
            same.targets_for(Some("m")).iter().next().unwrap(),
            "model: None"
        ));
    }

    /// Whether the checks of `routes` refuse a ~6 KB prompt for `model`.
    async fn refuses_long(routes: &Routes, model: &str) -> bool {
        use tower::{Layer, ServiceExt};
        let upstream = tower::service_fn(|_req: http::Request<_>| async {
            Ok::<_, std::convert::Infallible>(())
        });
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(135);
        let body =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{long}"}}]}}"#);
        let req = http::Request::post("/v1/chat/completions")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let checks = routes.checks().layer(upstream);
        match checks.oneshot(req).await {
            Ok(()) => false,
            Err(err) => err.code() == "context_length_exceeded",
        }
    }

    #[tokio::test]
    async fn the_checks_hold_the_windows_of_calls_with_one_target() {
        let (a, b) = (upstream("a", None), upstream("b", None));
        let windows = HashMap::from([
            ("small".to_owned(), ContextWindow::from(1000)),
            ("big".to_owned(), ContextWindow::from(1000)),
        ]);
        let routes = Routes::new(
            vec![a.clone(), b.clone()],
            &[
                route("alias", &[(0, Some("small"))], None),
                route("big", &[(0, None), (1, Some("small"))], None),
                route("*", &[(1, None)], None),
            ],
            windows.clone(),
        );
        // alias → small, one target; small, as asked by the "*" route.
        assert!(refuses_long(&routes, "alias").await);
        assert!(refuses_long(&routes, "small").await);
        // big has two targets: their windows decide, in the fallback.
        assert!(!refuses_long(&routes, "big").await);
        // Two upstreams and no route: every model has two targets.
        let every = Routes::new(vec![a, b], &[], windows);
        assert!(!refuses_long(&every, "small").await);
    }
}
