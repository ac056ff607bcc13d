//! A model's context window: [`ContextWindow`].

use super::Tokenizer;

/// How many tokens a model takes in one request (prompt plus requested
/// output), and how its prompt tokens are counted.
///
/// A plain number is a window counted with [`Tokenizer::Estimate`].
///
/// # Example
///
/// ```
/// use tower_http_resilience::check::{ContextWindow, Tokenizer};
///
/// let w = ContextWindow::from(8192);
/// assert_eq!(w.tokens(), 8192);
/// assert_eq!(w.tokenizer(), Tokenizer::Estimate);
///
/// let w = ContextWindow::new(128_000, Tokenizer::Estimate);
/// assert_eq!(w.tokens(), 128_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextWindow {
    tokens: u64,
    tokenizer: Tokenizer,
}

impl ContextWindow {
    /// A window of `tokens`, counted with `tokenizer`.
    pub const fn new(tokens: u64, tokenizer: Tokenizer) -> Self {
        ContextWindow { tokens, tokenizer }
    }

    /// The tokens the model takes: prompt plus requested output.
    pub const fn tokens(&self) -> u64 {
        self.tokens
    }

    /// How the prompt's tokens are counted.
    pub const fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }
}

impl From<u64> for ContextWindow {
    fn from(tokens: u64) -> Self {
        ContextWindow::new(tokens, Tokenizer::Estimate)
    }
}
