//! The usual shapes of credentials, found in text whatever surrounds them:
//! `sk-…`/`sk_…` API keys, `AIza…` keys, JSON Web Tokens and the token after
//! `Bearer`.

use std::ops::Range;

/// The shortest `sk-…`/`sk_…` key masked (`sk-learn` is a word, not a key).
const MIN_SK_KEY: usize = 10;

/// The shortest token after `Bearer` masked.
const MIN_BEARER_TOKEN: usize = 8;

/// Pushes the byte range of every credential-shaped run of `hay` onto `out`.
///
/// A shape counts only at the start of a word (after a byte that is not an
/// ASCII letter or digit), so `ask-me-anything` is left alone.
pub(crate) fn find(hay: &[u8], out: &mut Vec<Range<usize>>) {
    let mut i = 0;
    while i < hay.len() {
        let at_word_start = i == 0 || !hay[i - 1].is_ascii_alphanumeric();
        let found = if at_word_start {
            sk_key(hay, i)
                .or_else(|| google_key(hay, i))
                .or_else(|| jwt(hay, i))
                .or_else(|| bearer(hay, i))
        } else {
            None
        };
        match found {
            Some(range) => {
                i = range.end.max(i + 1);
                out.push(range);
            }
            None => i += 1,
        }
    }
}

/// Whether `hay` may hold a shape: a cheap filter before [`find`].
pub(crate) fn may_contain(hay: &[u8]) -> bool {
    hay.windows(3).any(|w| {
        matches!(
            w,
            [b's', b'k', b'-' | b'_'] | [b'e', b'y', b'J'] | [b'A', b'I', b'z']
        ) || w.eq_ignore_ascii_case(b"bea")
    })
}

/// Letters, digits, `-` and `_`: the characters of keys and of base64url.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The characters of an HTTP `token68` (what follows `Bearer`), less `=`.
fn is_token68_byte(b: u8) -> bool {
    is_key_byte(b) || matches!(b, b'.' | b'~' | b'+' | b'/')
}

fn run(hay: &[u8], from: usize, byte: fn(u8) -> bool) -> usize {
    hay[from..].iter().take_while(|b| byte(**b)).count()
}

fn sk_key(hay: &[u8], i: usize) -> Option<Range<usize>> {
    let rest = &hay[i..];
    if !(rest.starts_with(b"sk-") || rest.starts_with(b"sk_")) {
        return None;
    }
    let len = run(hay, i, is_key_byte);
    (len >= MIN_SK_KEY).then_some(i..i + len)
}

fn google_key(hay: &[u8], i: usize) -> Option<Range<usize>> {
    if !hay[i..].starts_with(b"AIza") {
        return None;
    }
    let len = run(hay, i, is_key_byte);
    (len >= 30).then_some(i..i + len)
}

/// `eyJ…` header, a dot, a payload, a dot and a signature (which may be
/// empty).
fn jwt(hay: &[u8], i: usize) -> Option<Range<usize>> {
    if !hay[i..].starts_with(b"eyJ") {
        return None;
    }
    let header = run(hay, i, is_key_byte);
    let mut end = i + header;
    if header < 10 || hay.get(end) != Some(&b'.') {
        return None;
    }
    let payload = run(hay, end + 1, is_key_byte);
    end += 1 + payload;
    if payload < 2 || hay.get(end) != Some(&b'.') {
        return None;
    }
    end += 1 + run(hay, end + 1, is_key_byte);
    Some(i..end)
}

/// The token after `Bearer` (any case) and white space; the word itself is
/// kept.
fn bearer(hay: &[u8], i: usize) -> Option<Range<usize>> {
    let word = hay.get(i..i + 6)?;
    if !word.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let gap = run(hay, i + 6, |b| b == b' ' || b == b'\t');
    if gap == 0 {
        return None;
    }
    let start = i + 6 + gap;
    let len = run(hay, start, is_token68_byte);
    if len < MIN_BEARER_TOKEN {
        return None;
    }
    let pad = run(hay, start + len, |b| b == b'=');
    Some(start..start + len + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(s.as_bytes(), &mut out);
        out.into_iter().map(|r| &s[r]).collect()
    }

    #[test]
    fn keys_are_found_whatever_surrounds_them() {
        for s in [
            "key sk-proj-abc123def456.",
            "api_key=sk-proj-abc123def456&x",
            "\"sk-proj-abc123def456\"",
            "a,sk-proj-abc123def456,b",
            "line\nsk-proj-abc123def456",
            ":sk-proj-abc123def456",
        ] {
            assert_eq!(shapes(s), ["sk-proj-abc123def456"], "{s:?}");
        }
        assert_eq!(shapes("sk_live_0123456789"), ["sk_live_0123456789"]);
    }

    #[test]
    fn words_are_not_keys() {
        assert!(shapes("ask-me-anything about sk-learn").is_empty());
        assert!(shapes("Bearer realm=\"api\", error=\"invalid_token\"").is_empty());
        assert!(shapes("Bearer token").is_empty());
        assert!(shapes("eyJust a word").is_empty());
    }

    #[test]
    fn bearer_tokens_and_jwts() {
        assert_eq!(
            shapes("got Bearer abc.def-ghi_jkl== here"),
            ["abc.def-ghi_jkl=="]
        );
        assert_eq!(shapes("BEARER\tabcdefghij"), ["abcdefghij"]);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(shapes(&format!("token={jwt};")), [jwt]);
        assert_eq!(
            shapes("k=AIzaSyA0123456789abcdefghijklmnopqrs"),
            ["AIzaSyA0123456789abcdefghijklmnopqrs"]
        );
    }

    #[test]
    fn the_filter_passes_every_shape() {
        for s in ["sk-x", "sk_x", "eyJx", "AIzax", "BeArEr x"] {
            assert!(may_contain(s.as_bytes()), "{s}");
        }
        assert!(!may_contain(b"nothing to see"));
    }
}
