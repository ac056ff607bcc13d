//! What the checks learnt about a request's size: [`PromptTokens`].

use super::{ContextWindow, Tokenizer};

/// The prompt tokens of a checked request and the output it asked for,
/// published in the request's extensions by [`CheckLayer`](super::CheckLayer)
/// so that a layer further in (a fallback choosing among models, say) can
/// tell whether a model's window can take the request without reading the
/// body again.
///
/// - [`estimate`](PromptTokens::estimate) is a lower bound on the prompt's
///   tokens for every [`Tokenizer`]: the text of the messages (or of the
///   largest prompt or input, for completions and embeddings), without the
///   chat format's framing.
/// - [`exact`](PromptTokens::exact) is the count of one encoding, when the
///   layer needed it to decide: the messages' text plus the chat format's
///   framing (3 tokens per message, 1 per `name`, 3 for the reply), the
///   count OpenAI's models bill. Tools, images and audio are not counted,
///   so it too is at most what the upstream counts.
/// - [`output`](PromptTokens::output) is the requested `max_tokens` (or
///   `max_completion_tokens`; the smaller when both are given), 0 when the
///   request names none.
///
/// [`fits`](PromptTokens::fits) is `false` only when the request certainly
/// does not fit: a model whose window it is `true` for may still refuse it,
/// one it is `false` for would.
///
/// # Example
///
/// ```
/// use tower_http_resilience::check::PromptTokens;
///
/// # let mut req = http::Request::new(());
/// # req.extensions_mut().insert(PromptTokens::new(900, 200));
/// // In a layer inside `CheckLayer`:
/// if let Some(tokens) = req.extensions().get::<PromptTokens>() {
///     assert!(!tokens.fits(1000)); // 900 + 200 > 1000
///     assert!(tokens.fits(8192));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptTokens {
    estimate: u64,
    exact: Option<(Tokenizer, u64)>,
    output: u64,
}

impl PromptTokens {
    /// A prompt of at least `estimate` tokens asking for `output` tokens.
    pub const fn new(estimate: u64, output: u64) -> Self {
        PromptTokens {
            estimate,
            exact: None,
            output,
        }
    }

    /// Records the exact count of the prompt with `tokenizer`.
    pub const fn with_exact(mut self, tokenizer: Tokenizer, tokens: u64) -> Self {
        self.exact = Some((tokenizer, tokens));
        self
    }

    /// A lower bound on the prompt's tokens, whatever the tokenizer.
    pub const fn estimate(&self) -> u64 {
        self.estimate
    }

    /// The exact count of the prompt and the tokenizer that counted it, when
    /// one did.
    pub const fn exact(&self) -> Option<(Tokenizer, u64)> {
        self.exact
    }

    /// The output tokens the request asked for (0 when it named none).
    pub const fn output(&self) -> u64 {
        self.output
    }

    /// The prompt's tokens as `tokenizer` counts them: the exact count when
    /// it was counted with `tokenizer`, else the estimate.
    pub fn prompt(&self, tokenizer: Tokenizer) -> u64 {
        match self.exact {
            Some((t, n)) if t == tokenizer => n,
            _ => self.estimate,
        }
    }

    /// Whether the request may fit `window`: the prompt (as the window's
    /// tokenizer counts it) plus the requested output is at most the
    /// window. A plain number is a window counted with
    /// [`Tokenizer::Estimate`].
    pub fn fits(&self, window: impl Into<ContextWindow>) -> bool {
        let window = window.into();
        self.prompt(window.tokenizer()).saturating_add(self.output) <= window.tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_uses_the_count_of_the_windows_tokenizer() {
        let t = PromptTokens::new(100, 50);
        assert!(t.fits(150));
        assert!(!t.fits(149));
        assert_eq!(t.prompt(Tokenizer::Estimate), 100);
        let t = t.with_exact(Tokenizer::Estimate, 120);
        assert!(!t.fits(150));
        assert!(PromptTokens::new(u64::MAX, u64::MAX).fits(u64::MAX));
    }
}
