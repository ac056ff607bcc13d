//! [`Served`]: which target a call's outcome came from.

use std::sync::Arc;

/// Which target a call ended on: the target that answered or, for a
/// failure, the last target tried (the failure the caller gets may be an
/// earlier target's, when it tells more: see the
/// [module docs](super#when-every-target-failed)).
///
/// The attempt loop puts it in the extensions of every response and every
/// [`ApiError`](crate::ApiError) of a call that has named targets (a call
/// with the default, unnamed target has none). The attempts made on all
/// targets are in [`Attempts`](crate::retry::Attempts).
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use tower_http_resilience::fallback::{FallbackLayer, Served, Target, Targets};
/// use tower_http_resilience::retry::{Attempts, ReplayBody};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // The first upstream has lost its model; the second answers.
/// let upstream = tower::service_fn(|req: http::Request<ReplayBody<String>>| async move {
///     let status = if req.uri().host() == Some("a.example") { 404 } else { 200 };
///     let res = http::Response::builder().status(status).body(String::new())?;
///     Ok::<_, tower_http_resilience::BoxError>(res)
/// });
/// let targets: Targets = [
///     Target::new("a").base_uri("http://a.example".parse().unwrap()),
///     Target::new("b").base_uri("http://b.example".parse().unwrap()),
/// ]
/// .into();
/// let client = FallbackLayer::new(targets).layer(upstream);
/// let res = client.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// let served = Served::of(res.extensions()).unwrap();
/// assert_eq!((served.target(), served.index()), ("b", 1));
/// assert_eq!(Attempts::of(res.extensions()).get(), 2);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    target: Arc<str>,
    index: usize,
}

impl Served {
    pub(crate) fn new(target: Arc<str>, index: usize) -> Self {
        Served { target, index }
    }

    /// What `extensions` (of a response or an error) record, if the call
    /// had named targets.
    pub fn of(extensions: &http::Extensions) -> Option<&Served> {
        extensions.get::<Served>()
    }

    /// The target's name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target's place in the call's targets (0 for the first).
    pub fn index(&self) -> usize {
        self.index
    }
}
