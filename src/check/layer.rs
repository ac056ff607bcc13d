//! [`CheckLayer`]: the checks' settings, and the layer that applies them.

use std::sync::Arc;

use tower_layer::Layer;

use super::config::Config;
use super::{Check, ContextWindow};

/// Checks OpenAI-shaped requests before the inner service is called, and
/// answers the invalid ones at once with the canonical 400 envelope; see
/// the [module docs](super) for what is checked.
///
/// The layer holds settings only: the body cap and the context window of
/// each model (by the `model` name in the request body). Its services share
/// them through one `Arc`.
///
/// # Example
///
/// ```
/// use tower_http_resilience::check::{CheckLayer, ContextWindow, Tokenizer};
///
/// let layer = CheckLayer::new()
///     .max_body(8 * 1024 * 1024)
///     .context_window("gpt-4o-mini", ContextWindow::new(128_000, Tokenizer::Estimate))
///     .context_window("llama3-8b", 8192);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct CheckLayer {
    config: Arc<Config>,
}

impl CheckLayer {
    /// A layer with the default body cap
    /// ([`DEFAULT_MAX_BODY`](super::DEFAULT_MAX_BODY), 64 MiB) and no
    /// context windows: every check but the context window's.
    pub fn new() -> Self {
        CheckLayer::default()
    }

    /// The most bytes of a body read; a checked request with a larger body
    /// is answered 413 `request_too_large`, having read at most this many
    /// bytes (and the one frame that crossed the cap), or none when its
    /// `content-length` says so.
    pub fn max_body(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_body = bytes;
        self
    }

    /// The context window of `model` (the `model` field of the body, as
    /// sent): a request whose prompt plus requested output is over it is
    /// answered 400 `context_length_exceeded`. A plain number is a window
    /// counted with [`Tokenizer::Estimate`](super::Tokenizer::Estimate).
    ///
    /// An exact tokenizer's encoding is loaded now (once per process), so
    /// that no request waits for it.
    pub fn context_window(
        mut self,
        model: impl Into<String>,
        window: impl Into<ContextWindow>,
    ) -> Self {
        let window = window.into();
        window.tokenizer().load();
        Arc::make_mut(&mut self.config)
            .windows
            .insert(model.into().into_boxed_str(), window);
        self
    }
}

impl<S> Layer<S> for CheckLayer {
    type Service = Check<S>;

    fn layer(&self, inner: S) -> Check<S> {
        Check::from_parts(inner, self.config.clone())
    }
}
