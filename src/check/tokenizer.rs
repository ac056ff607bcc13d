//! How prompt tokens are counted: [`Tokenizer`].

use std::fmt;
use std::str::FromStr;

use super::estimate;

/// How the tokens of a prompt are counted for a model.
///
/// | tokenizer | count | models |
/// |---|---|---|
/// | [`Estimate`](Tokenizer::Estimate) (default) | a lower bound from the text's structure: never above the real count of `cl100k_base` or `o200k_base` | any model whose tokenizer splits words, numbers and punctuation like those (GPT, Llama 3, Qwen, …) |
/// | `O200kBase` (feature `tokenizer`) | exact | GPT-4o, GPT-4.1, GPT-5, o1, o3, o4 |
/// | `Cl100kBase` (feature `tokenizer`) | exact | GPT-4, GPT-3.5-turbo, text-embedding-3 |
///
/// The exact encodings come embedded in the `tiktoken-rs` crate: nothing is
/// downloaded. Each is loaded once per process, on first use (about a
/// tenth of a second); [`CheckLayer::context_window`] loads it when the
/// layer is built, so no request waits for it.
///
/// [`CheckLayer::context_window`]: super::CheckLayer::context_window
///
/// # Example
///
/// ```
/// use tower_http_resilience::check::Tokenizer;
///
/// let t: Tokenizer = "estimate".parse().unwrap();
/// assert_eq!(t, Tokenizer::Estimate);
/// // "Hello" "," " world" "!"
/// assert_eq!(t.count("Hello, world!"), 4);
/// assert!("o100k".parse::<Tokenizer>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tokenizer {
    /// A lower bound on the tokens of any encoding that splits text like
    /// `cl100k_base` and `o200k_base` do.
    #[default]
    Estimate,
    /// OpenAI's `o200k_base` encoding, exact.
    #[cfg(feature = "tokenizer")]
    O200kBase,
    /// OpenAI's `cl100k_base` encoding, exact.
    #[cfg(feature = "tokenizer")]
    Cl100kBase,
}

impl Tokenizer {
    /// The name: `estimate`, `o200k_base`, `cl100k_base`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tokenizer::Estimate => "estimate",
            #[cfg(feature = "tokenizer")]
            Tokenizer::O200kBase => "o200k_base",
            #[cfg(feature = "tokenizer")]
            Tokenizer::Cl100kBase => "cl100k_base",
        }
    }

    /// Whether [`count`](Tokenizer::count) is exact rather than a lower
    /// bound.
    pub const fn is_exact(self) -> bool {
        !matches!(self, Tokenizer::Estimate)
    }

    /// The tokens of `text` as ordinary text (a special token's text, such as
    /// `<|endoftext|>`, counts as the characters it is made of): exact for an
    /// encoding, a lower bound for [`Estimate`](Tokenizer::Estimate).
    pub fn count(self, text: &str) -> u64 {
        match self {
            Tokenizer::Estimate => estimate::lower_bound(text),
            #[cfg(feature = "tokenizer")]
            Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton()
                .encode_ordinary(text)
                .len() as u64,
            #[cfg(feature = "tokenizer")]
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton()
                .encode_ordinary(text)
                .len() as u64,
        }
    }

    /// Loads the encoding now, so the first count does not pay for it.
    pub(crate) fn load(self) {
        match self {
            Tokenizer::Estimate => {}
            #[cfg(feature = "tokenizer")]
            Tokenizer::O200kBase => {
                tiktoken_rs::o200k_base_singleton();
            }
            #[cfg(feature = "tokenizer")]
            Tokenizer::Cl100kBase => {
                tiktoken_rs::cl100k_base_singleton();
            }
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tokenizer {
    type Err = UnknownTokenizer;

    /// Reads `estimate`, `o200k_base` or `cl100k_base` (the last two with
    /// the `tokenizer` feature).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "estimate" => Ok(Tokenizer::Estimate),
            #[cfg(feature = "tokenizer")]
            "o200k_base" => Ok(Tokenizer::O200kBase),
            #[cfg(feature = "tokenizer")]
            "cl100k_base" => Ok(Tokenizer::Cl100kBase),
            _ => Err(UnknownTokenizer {
                needs_feature: matches!(s, "o200k_base" | "cl100k_base"),
            }),
        }
    }
}

/// A tokenizer name that is not known (or whose encoding needs the
/// `tokenizer` feature).
///
/// ```
/// use tower_http_resilience::check::Tokenizer;
///
/// let err = "p50k".parse::<Tokenizer>().unwrap_err();
/// assert!(err.to_string().starts_with("unknown tokenizer"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTokenizer {
    needs_feature: bool,
}

impl fmt::Display for UnknownTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.needs_feature {
            f.write_str("this tokenizer needs the `tokenizer` feature of tower-http-resilience")
        } else {
            f.write_str("unknown tokenizer: expected estimate, o200k_base or cl100k_base")
        }
    }
}

impl std::error::Error for UnknownTokenizer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [
            Tokenizer::Estimate,
            #[cfg(feature = "tokenizer")]
            Tokenizer::O200kBase,
            #[cfg(feature = "tokenizer")]
            Tokenizer::Cl100kBase,
        ] {
            assert_eq!(t.as_str().parse::<Tokenizer>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
    }

    #[cfg(not(feature = "tokenizer"))]
    #[test]
    fn encodings_name_the_feature() {
        let err = "o200k_base".parse::<Tokenizer>().unwrap_err();
        assert!(err.to_string().contains("`tokenizer` feature"));
    }
}
