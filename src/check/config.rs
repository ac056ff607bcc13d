//! The settings a [`CheckLayer`](super::CheckLayer) shares with its
//! services and their futures.

use std::collections::HashMap;

use super::ContextWindow;

/// The default cap on a checked request body: 64 MiB, above the largest
/// requests the big providers document (OpenAI takes up to 50 MB of images
/// in one request), so that no request an upstream would take is refused
/// for its size by default.
///
/// ```
/// assert_eq!(tower_http_resilience::check::DEFAULT_MAX_BODY, 64 << 20);
/// ```
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_body: usize,
    pub(crate) windows: HashMap<Box<str>, ContextWindow>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body: DEFAULT_MAX_BODY,
            windows: HashMap::new(),
        }
    }
}

impl Config {
    /// The context window of `model`, if one is configured.
    pub(crate) fn window(&self, model: &str) -> Option<ContextWindow> {
        self.windows.get(model).copied()
    }
}
