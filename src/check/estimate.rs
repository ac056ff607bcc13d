//! A lower bound on the tokens of a text, from its bytes alone.
//!
//! The GPT encodings (`cl100k_base`, `o200k_base`) first cut a text into
//! pieces with a regular expression, then encode each piece on its own: no
//! token ever spans two pieces. The pieces are words (letters, with at most
//! one leading non-letter character and, for `o200k_base`, a trailing
//! `'s`-style contraction), numbers of one to three digits, runs of
//! punctuation (which may absorb trailing newlines, and slashes for
//! `o200k_base`) and runs of white space.
//!
//! So a text needs at least one token for each of these, and they never
//! share a token:
//!
//! - each maximal run of letters, apostrophes and non-ASCII characters that
//!   holds a letter: at least one token, and at least one per
//!   [`ASCII_LETTERS_PER_TOKEN`] ASCII letters and per [`CJK_PER_TOKEN`]
//!   CJK ideographs in it;
//! - each maximal run of numerals: one token per three numerals;
//! - each maximal run of ASCII punctuation (but `'`) followed by a space, a
//!   tab, a digit or the end: one token (a piece of punctuation ends there);
//! - each maximal run of ASCII white space after an ASCII letter, an ASCII
//!   digit or at the start, holding a line break or at least two
//!   characters: one token (a piece of white space starts there).
//!
//! The sum is compared with the length bound (no token is longer than
//! [`MAX_TOKEN_BYTES`]) and the larger is the estimate. It counts English
//! prose close to its real count and code or CJK text well below it: the
//! point is that it is never above the real count of either encoding.

/// The longest token of `cl100k_base` and of `o200k_base`, in bytes: 128 (a
/// run of spaces), measured over both vocabularies.
pub(crate) const MAX_TOKEN_BYTES: u64 = 128;

/// The most ASCII letters in one token: 41 in `cl100k_base`
/// (`.translatesAutoresizingMaskIntoConstraints`), 26 in `o200k_base`
/// (the alphabet), measured over both vocabularies.
pub(crate) const ASCII_LETTERS_PER_TOKEN: u64 = 41;

/// The most CJK ideographs (U+3400–U+4DBF, U+4E00–U+9FFF) one token
/// touches, counting a character cut at either end of the token: 10 in
/// `o200k_base`, 6 in `cl100k_base`, measured over both vocabularies.
pub(crate) const CJK_PER_TOKEN: u64 = 10;

/// The numerals one number piece holds (`\p{N}{1,3}` in both encodings).
const NUMERALS_PER_TOKEN: u64 = 3;

/// A lower bound on the number of tokens `text` encodes to with
/// `cl100k_base` or `o200k_base` (ordinary text, no special tokens).
pub(crate) fn lower_bound(text: &str) -> u64 {
    let by_length = (text.len() as u64).div_ceil(MAX_TOKEN_BYTES);
    Scan::default().run(text).max(by_length)
}

/// What the scanner knows about the characters seen so far.
#[derive(Default)]
struct Scan {
    total: u64,
    /// The word run under way: ASCII letters, CJK ideographs, whether it
    /// holds any letter.
    word: Option<Word>,
    /// Numerals in the numeral run under way.
    numerals: u64,
    /// Whether an ASCII punctuation run is under way.
    punct: bool,
    /// The white-space run under way: counted once it qualifies.
    space: Option<Space>,
    /// The class of the previous character.
    prev: Prev,
}

#[derive(Default)]
struct Word {
    ascii: u64,
    cjk: u64,
    letter: bool,
}

struct Space {
    /// The run follows an ASCII letter, an ASCII digit or the start.
    after_word_or_digit: bool,
    len: u32,
    newline: bool,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Prev {
    #[default]
    Start,
    AsciiLetter,
    AsciiDigit,
    Other,
}

impl Scan {
    fn run(mut self, text: &str) -> u64 {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                self.ascii(b);
                i += 1;
            } else {
                // `i` is at a character boundary: ASCII bytes are whole
                // characters, and non-ASCII ones are skipped whole.
                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                self.non_ascii(c);
                i += c.len_utf8();
            }
        }
        self.end_punct(true);
        self.end_word();
        self.end_numerals();
        self.end_space();
        self.total
    }

    fn ascii(&mut self, b: u8) {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {
                self.end_punct(false);
                self.end_numerals();
                self.end_space();
                let w = self.word.get_or_insert_with(Word::default);
                w.ascii += 1;
                w.letter = true;
                self.prev = Prev::AsciiLetter;
            }
            b'\'' => {
                self.end_punct(false);
                self.end_numerals();
                self.end_space();
                self.word.get_or_insert_with(Word::default);
                self.prev = Prev::Other;
            }
            b'0'..=b'9' => {
                self.end_punct(true);
                self.end_word();
                self.end_space();
                self.numerals += 1;
                self.prev = Prev::AsciiDigit;
            }
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                // A space or a tab ends a punctuation piece; a line break
                // may be absorbed by it.
                self.end_punct(b != b'\n' && b != b'\r');
                self.end_word();
                self.end_numerals();
                let prev = self.prev;
                let s = self.space.get_or_insert(Space {
                    after_word_or_digit: prev != Prev::Other,
                    len: 0,
                    newline: false,
                });
                s.len = s.len.saturating_add(1);
                s.newline |= b == b'\n' || b == b'\r';
                self.prev = Prev::Other;
            }
            0x21..=0x7e => {
                self.end_word();
                self.end_numerals();
                self.end_space();
                self.punct = true;
                self.prev = Prev::Other;
            }
            // Control characters: they end every run and start none.
            _ => {
                self.end_punct(false);
                self.end_word();
                self.end_numerals();
                self.end_space();
                self.prev = Prev::Other;
            }
        }
    }

    fn non_ascii(&mut self, c: char) {
        // A non-ASCII character may be a letter, a mark, punctuation or
        // white space: it joins the word run (which makes the count only
        // smaller) and ends the ASCII runs without counting them.
        self.end_punct(false);
        self.end_space();
        if c.is_numeric() {
            self.numerals += 1;
        } else {
            self.end_numerals();
        }
        let w = self.word.get_or_insert_with(Word::default);
        if is_cjk(c) {
            w.cjk += 1;
            w.letter = true;
        } else if is_letter(c) {
            w.letter = true;
        }
        self.prev = Prev::Other;
    }

    /// Ends a punctuation run; `counted` says whether what follows ends
    /// its piece there.
    fn end_punct(&mut self, counted: bool) {
        if std::mem::take(&mut self.punct) && counted {
            self.total += 1;
        }
    }

    fn end_word(&mut self) {
        if let Some(w) = self.word.take() {
            if w.letter {
                let n = w
                    .ascii
                    .div_ceil(ASCII_LETTERS_PER_TOKEN)
                    .max(w.cjk.div_ceil(CJK_PER_TOKEN))
                    .max(1);
                self.total += n;
            }
        }
    }

    fn end_numerals(&mut self) {
        self.total += std::mem::take(&mut self.numerals).div_ceil(NUMERALS_PER_TOKEN);
    }

    fn end_space(&mut self) {
        if let Some(s) = self.space.take() {
            if s.after_word_or_digit && (s.newline || s.len >= 2) {
                self.total += 1;
            }
        }
    }
}

/// CJK Unified Ideographs and their Extension A.
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}')
}

/// Letters of the common alphabets (every character here is in `\p{L}`):
/// Latin-1 and Latin Extended, basic Greek and Cyrillic, kana, Hangul.
fn is_letter(c: char) -> bool {
    matches!(c,
        '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{24F}'
        | '\u{391}'..='\u{3A9}' | '\u{3B1}'..='\u{3C9}'
        | '\u{410}'..='\u{44F}'
        | '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}'
        | '\u{AC00}'..='\u{D7A3}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_punctuation_and_numbers() {
        // cl100k: "Hello" "," " world" "." " This" " is" " a" " test" "."
        assert_eq!(lower_bound("Hello, world. This is a test."), 9);
        // "e" ".g" "." : the dot before a letter may join the word.
        assert_eq!(lower_bound("e.g."), 3);
        // "123" "456" "7"
        assert_eq!(lower_bound("1234567"), 3);
        assert_eq!(lower_bound(""), 0);
        assert_eq!(lower_bound("   "), 1);
    }

    #[test]
    fn contractions_and_apostrophes_join_words() {
        assert_eq!(lower_bound("it's"), 1);
        assert_eq!(lower_bound("''''"), 1, "by length only");
    }

    #[test]
    fn long_runs_need_several_tokens() {
        let a = "a".repeat(410);
        assert_eq!(lower_bound(&a), 10);
        let han = "字".repeat(100);
        assert_eq!(lower_bound(&han), 10);
        let spaces = " ".repeat(1000);
        assert_eq!(lower_bound(&spaces), 8, "by length: 1000 / 128");
    }

    #[test]
    fn line_breaks_after_words_are_their_own_piece() {
        assert_eq!(lower_bound("a\nb"), 3);
        // The dot may absorb the line break.
        assert_eq!(lower_bound("a.\nb"), 2);
        // Two spaces: one of them is a piece of its own.
        assert_eq!(lower_bound("a  b"), 3);
        assert_eq!(lower_bound("a b"), 2);
    }

    #[test]
    fn non_ascii_joins_the_word_run() {
        // "naïve" is one run; "—" alone holds no letter.
        assert_eq!(lower_bound("naïve"), 1);
        assert_eq!(lower_bound("—"), 1, "by length only");
        assert_eq!(lower_bound("你好，世界"), 1);
    }
}
