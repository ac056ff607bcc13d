//! [`Targets`]: the ordered targets of a call, and [`SelectTargets`]: how
//! a call gets them.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

use super::target::Target;

/// The targets of a call, in the order they are tried; cheap to clone (one
/// `Arc`).
///
/// The default, like an empty list, is one target that rewrites nothing:
/// the call goes where it was sent, as a plain retry loop would send it.
///
/// ```
/// use tower_http_resilience::fallback::{Target, Targets};
///
/// let targets: Targets = [Target::new("openai"), Target::new("backup")].into();
/// assert_eq!(targets.len(), 2);
/// assert_eq!(targets.iter().map(Target::name).collect::<Vec<_>>(), ["openai", "backup"]);
/// assert_eq!(Targets::default().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Targets(Option<Arc<[Target]>>);

impl Targets {
    /// These targets, in order (none: the default).
    pub fn new(targets: impl IntoIterator<Item = Target>) -> Self {
        targets.into_iter().collect()
    }

    /// How many targets a call walks (at least 1).
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(1, |t| t.len())
    }

    /// Always `false`: a call has at least one target.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The targets, in order (the default has none to show: it rewrites
    /// nothing and has no name).
    pub fn iter(&self) -> std::slice::Iter<'_, Target> {
        self.0.as_deref().unwrap_or(&[]).iter()
    }

    /// Target `index`, when the list names it (`None` for the default).
    pub(crate) fn get(&self, index: usize) -> Option<&Target> {
        self.0.as_deref()?.get(index)
    }

    /// Whether this is the default: one target that rewrites nothing.
    pub(crate) fn is_plain(&self) -> bool {
        self.0.is_none()
    }
}

impl FromIterator<Target> for Targets {
    fn from_iter<I: IntoIterator<Item = Target>>(iter: I) -> Self {
        let all: Arc<[Target]> = iter.into_iter().collect();
        Targets((!all.is_empty()).then_some(all))
    }
}

impl From<Vec<Target>> for Targets {
    fn from(targets: Vec<Target>) -> Self {
        Targets::new(targets)
    }
}

impl<const N: usize> From<[Target; N]> for Targets {
    fn from(targets: [Target; N]) -> Self {
        Targets::new(targets)
    }
}

impl fmt::Debug for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Targets(one that rewrites nothing)"),
            Some(all) => f.debug_list().entries(all.iter()).finish(),
        }
    }
}

/// Chooses the targets of a call from its request head: the same list for
/// every call ([`Targets`]), or a function of the request (a gateway picks
/// the route of the model the caller asked for).
///
/// Implemented by [`Targets`] and by closures `Fn(&Parts) -> Targets`. It
/// runs once per call, before the first attempt; keep the lists built
/// (a [`Targets`] clone is one `Arc`).
///
/// ```
/// use http::request::Parts;
/// use tower_http_resilience::fallback::{FallbackLayer, Target, Targets};
///
/// let chat: Targets = [Target::new("openai:gpt-4o"), Target::new("backup:gpt-4o")].into();
/// let other: Targets = [Target::new("openai")].into();
/// // Chat calls may fall back; the rest go to one upstream.
/// let layer = FallbackLayer::new(move |parts: &Parts| {
///     if parts.uri.path().ends_with("/chat/completions") { chat.clone() } else { other.clone() }
/// });
/// # let _ = layer;
/// ```
pub trait SelectTargets: Send + Sync + 'static {
    /// The targets of the call whose request head is `parts`, in order.
    fn select(&self, parts: &Parts) -> Targets;
}

impl SelectTargets for Targets {
    fn select(&self, _parts: &Parts) -> Targets {
        self.clone()
    }
}

impl<F> SelectTargets for F
where
    F: Fn(&Parts) -> Targets + Send + Sync + 'static,
{
    fn select(&self, parts: &Parts) -> Targets {
        self(parts)
    }
}

/// The targets of a loop, shared by every service it makes.
#[derive(Clone)]
pub(crate) struct Selector(Arc<dyn SelectTargets>);

impl Selector {
    pub(crate) fn new(targets: impl SelectTargets) -> Self {
        Selector(Arc::new(targets))
    }

    pub(crate) fn select(&self, parts: &Parts) -> Targets {
        self.0.select(parts)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Selector")
    }
}
