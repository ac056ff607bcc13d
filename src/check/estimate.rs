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
///
/// One pass over the bytes, a run at a time.
pub(crate) fn lower_bound(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut count = Count::default();
    // Whether the last character was an ASCII letter or digit (or there was
    // none): a run of white space after it starts a piece of its own.
    let mut after_letter_or_digit = true;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {
                i = prose(text, i, &mut count);
                after_letter_or_digit = bytes[i - 1].is_ascii_alphabetic();
            }
            b'\'' | 0x80..=0xff => {
                i = word(text, i, &mut count);
                after_letter_or_digit = bytes[i - 1].is_ascii_alphabetic();
            }
            b'0'..=b'9' => {
                let start = i;
                i += run(&bytes[i..], u8::is_ascii_digit);
                // A run of numerals may go on from non-ASCII ones.
                count.numerals += (i - start) as u64;
                after_letter_or_digit = true;
            }
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                count.end_numerals();
                let start = i;
                i += run(&bytes[i..], |b| matches!(b, b' ' | b'\t' | 0x0b | 0x0c));
                let newline = bytes.get(i).is_some_and(|b| matches!(b, b'\n' | b'\r'));
                i += run(&bytes[i..], |b| {
                    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
                });
                if after_letter_or_digit && (newline || i - start >= 2) {
                    count.total += 1;
                }
                after_letter_or_digit = false;
            }
            0x21..=0x7e => {
                // Punctuation (but `'`): a piece of its own ends with it
                // when a space, a tab, a digit or the end follows (a line
                // break may join it, a letter may follow its last character
                // into a word).
                count.end_numerals();
                i += run(&bytes[i..], |b| {
                    (0x21..=0x7e).contains(b) && *b != b'\'' && !b.is_ascii_alphanumeric()
                });
                if matches!(
                    bytes.get(i),
                    None | Some(b' ' | b'\t' | 0x0b | 0x0c | b'0'..=b'9')
                ) {
                    count.total += 1;
                }
                after_letter_or_digit = false;
            }
            _ => {
                // Control characters end every run and start none.
                count.end_numerals();
                after_letter_or_digit = false;
                i += 1;
            }
        }
    }
    count.end_numerals();
    let by_length = (text.len() as u64).div_ceil(MAX_TOKEN_BYTES);
    count.total.max(by_length)
}

/// What the scan has counted.
#[derive(Default)]
struct Count {
    total: u64,
    /// Numerals in the numeral run under way (ASCII digits and non-ASCII
    /// numerals: a run may cross from one to the other).
    numerals: u64,
}

impl Count {
    fn end_numerals(&mut self) {
        if self.numerals > 0 {
            self.total += std::mem::take(&mut self.numerals).div_ceil(NUMERALS_PER_TOKEN);
        }
    }
}

/// The length of the run of bytes at the start of `bytes` that are `in_run`.
#[inline]
fn run(bytes: &[u8], in_run: impl Fn(&u8) -> bool) -> usize {
    bytes.iter().position(|b| !in_run(b)).unwrap_or(bytes.len())
}

/// Counts ASCII words apart by single spaces (prose), one step each, from
/// the ASCII letter at `i`; hands a word that goes on with an apostrophe or
/// a non-ASCII character to [`word`]. Returns where it stopped.
fn prose(text: &str, mut i: usize, count: &mut Count) -> usize {
    let bytes = text.as_bytes();
    count.end_numerals();
    loop {
        let letters = run(&bytes[i..], u8::is_ascii_alphabetic);
        let next = bytes.get(i + letters);
        if let Some(b'\'' | 0x80..=0xff) = next {
            return word(text, i, count);
        }
        i += letters;
        count.total += (letters as u64).div_ceil(ASCII_LETTERS_PER_TOKEN);
        match bytes.get(i + 1) {
            Some(b) if next == Some(&b' ') && b.is_ascii_alphabetic() => i += 1,
            _ => return i,
        }
    }
}

/// Counts the run of letters, apostrophes and non-ASCII characters that
/// starts at `i`; returns where it ends.
fn word(text: &str, mut i: usize, count: &mut Count) -> usize {
    let bytes = text.as_bytes();
    let (mut ascii, mut cjk, mut letter) = (0u64, 0u64, false);
    loop {
        let letters = run(&bytes[i..], u8::is_ascii_alphabetic);
        if letters > 0 {
            i += letters;
            ascii += letters as u64;
            letter = true;
            count.end_numerals();
        }
        match bytes.get(i) {
            Some(b'\'') => {
                count.end_numerals();
                i += 1;
            }
            Some(0x80..=0xff) => {
                // `i` is at a character boundary: ASCII bytes are whole
                // characters, and non-ASCII ones are skipped whole.
                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                i += c.len_utf8();
                if c.is_numeric() {
                    count.numerals += 1;
                } else {
                    count.end_numerals();
                }
                if is_cjk(c) {
                    cjk += 1;
                    letter = true;
                } else if is_letter(c) {
                    letter = true;
                }
            }
            _ => break,
        }
    }
    if letter {
        count.total += ascii
            .div_ceil(ASCII_LETTERS_PER_TOKEN)
            .max(cjk.div_ceil(CJK_PER_TOKEN))
            .max(1);
    }
    i
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
