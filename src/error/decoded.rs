//! Text decoded from an escaped form (JSON string escapes, percent-encoding)
//! that remembers where each decoded byte came from.

use std::ops::Range;

/// Bytes decoded from a text, each knowing the bytes of the text it came
/// from, so that a range found in the decoded form maps back to whole
/// escapes of the original.
pub(super) struct Decoded {
    pub(super) bytes: Vec<u8>,
    from: Vec<Range<usize>>,
}

impl Decoded {
    fn with_capacity(n: usize) -> Self {
        Decoded {
            bytes: Vec::with_capacity(n),
            from: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, bytes: &[u8], from: Range<usize>) {
        for &b in bytes {
            self.bytes.push(b);
            self.from.push(from.clone());
        }
    }

    /// The range of the original text a decoded range came from.
    pub(super) fn source(&self, r: Range<usize>) -> Range<usize> {
        self.from[r.start].start..self.from[r.end - 1].end
    }

    /// `%XX` decoded; anything else kept.
    pub(super) fn percent(raw: &[u8]) -> Self {
        let mut d = Decoded::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let byte = (raw[i] == b'%')
                .then(|| Some((hex(*raw.get(i + 1)?)? << 4) | hex(*raw.get(i + 2)?)?))
                .flatten();
            match byte {
                Some(b) => {
                    d.push(&[b], i..i + 3);
                    i += 3;
                }
                None => {
                    d.push(&raw[i..=i], i..i + 1);
                    i += 1;
                }
            }
        }
        d
    }

    /// The inside of a JSON string with its escapes decoded; an escape that
    /// is not valid is kept as written.
    #[cfg(feature = "normalize")]
    pub(super) fn json(raw: &[u8]) -> Self {
        let mut d = Decoded::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] != b'\\' {
                d.push(&raw[i..=i], i..i + 1);
                i += 1;
                continue;
            }
            let (ch, len) = json_escape(&raw[i..]).unwrap_or(('\\', 1));
            let mut buf = [0; 4];
            d.push(ch.encode_utf8(&mut buf).as_bytes(), i..i + len);
            i += len;
        }
        d
    }
}

/// The character of the JSON escape at the start of `s`, and its length.
#[cfg(feature = "normalize")]
fn json_escape(s: &[u8]) -> Option<(char, usize)> {
    let simple = match *s.get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return unicode_escape(s),
        _ => return None,
    };
    Some((simple, 2))
}

/// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`.
#[cfg(feature = "normalize")]
fn unicode_escape(s: &[u8]) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u32> {
        let digits = s.get(at..at + 4)?;
        digits
            .iter()
            .try_fold(0u32, |acc, &b| Some((acc << 4) | u32::from(hex(b)?)))
    };
    let high = unit(2)?;
    if (0xD800..0xDC00).contains(&high) && s.get(6..8) == Some(b"\\u") {
        let low = unit(8)?;
        if (0xDC00..0xE000).contains(&low) {
            let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return Some((char::from_u32(c)?, 12));
        }
    }
    Some((char::from_u32(high).unwrap_or('\u{fffd}'), 6))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(all(test, feature = "normalize"))]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode() {
        let d = Decoded::json(br#"a\"b\u00e9\ud83d\ude00\x\u12"#);
        assert_eq!(String::from_utf8_lossy(&d.bytes), "a\"bé😀\\x\\u12");
        assert_eq!(d.source(3..5), 4..10, "é maps to its whole escape");
        let d = Decoded::percent(b"a%2Fb%zz%4");
        assert_eq!(&d.bytes[..], b"a/b%zz%4");
        assert_eq!(d.source(1..2), 1..4);
    }
}
