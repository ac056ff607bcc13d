//! Counting the prompt while the body is parsed: [`Count`], with the bounds
//! of the first pass ([`Bounds`]) and the exact count of the second
//! ([`Exact`]).

use super::estimate::lower_bound;
use super::Tokenizer;

/// The tokens the chat format adds per message (OpenAI's models).
pub(crate) const PER_MESSAGE: u64 = 3;
/// The tokens the chat format adds for a message's `name`.
pub(crate) const PER_NAME: u64 = 1;
/// The tokens that prime the reply, once per chat request.
pub(crate) const REPLY: u64 = 3;

/// What one pass over the body counts: prompt text, the chat format's
/// framing and token ids given as numbers. A counter is a small `Copy`
/// value; a fresh one is a copy of an empty one.
pub(crate) trait Count: Copy {
    /// A piece of prompt text.
    fn text(&mut self, s: &str);
    /// Text of the chat format (a role, a name) and `extra` framing tokens.
    fn framing(&mut self, s: &str, extra: u64);
    /// `n` token ids.
    fn ids(&mut self, n: u64);
    /// Adds the count of another part of the same prompt.
    fn add(&mut self, other: Self);
    /// Keeps the larger of two prompts (several prompts in one request).
    fn max(&mut self, other: Self);
}

/// The first pass: a lower bound on the text's tokens (any tokenizer) and
/// an upper bound on the exact count with framing (no token is shorter
/// than a byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) lower: u64,
    pub(crate) upper: u64,
}

impl Count for Bounds {
    fn text(&mut self, s: &str) {
        self.lower = self.lower.saturating_add(lower_bound(s));
        self.upper = self.upper.saturating_add(s.len() as u64);
    }

    fn framing(&mut self, s: &str, extra: u64) {
        self.upper = self
            .upper
            .saturating_add(s.len() as u64)
            .saturating_add(extra);
    }

    fn ids(&mut self, n: u64) {
        self.lower = self.lower.saturating_add(n);
        self.upper = self.upper.saturating_add(n);
    }

    fn add(&mut self, other: Self) {
        self.lower = self.lower.saturating_add(other.lower);
        self.upper = self.upper.saturating_add(other.upper);
    }

    fn max(&mut self, other: Self) {
        self.lower = self.lower.max(other.lower);
        self.upper = self.upper.max(other.upper);
    }
}

/// The second pass: the exact count of one encoding, framing included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exact {
    tokenizer: Tokenizer,
    pub(crate) tokens: u64,
}

impl Exact {
    pub(crate) fn new(tokenizer: Tokenizer) -> Self {
        Exact {
            tokenizer,
            tokens: 0,
        }
    }
}

impl Count for Exact {
    fn text(&mut self, s: &str) {
        self.tokens = self.tokens.saturating_add(self.tokenizer.count(s));
    }

    fn framing(&mut self, s: &str, extra: u64) {
        self.text(s);
        self.tokens = self.tokens.saturating_add(extra);
    }

    fn ids(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_add(n);
    }

    fn add(&mut self, other: Self) {
        self.tokens = self.tokens.saturating_add(other.tokens);
    }

    fn max(&mut self, other: Self) {
        self.tokens = self.tokens.max(other.tokens);
    }
}
