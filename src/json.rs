//! A bounded walk over the top-level members of a JSON object, for the
//! layers that look at one key of a request body without parsing it: the
//! timeout (`"stream": true`), the fallback (`"model"` renamed) and the
//! readers of event streams (an error envelope in an event's data).
//!
//! The input may be cut anywhere (the start of a body, read up to a cap):
//! the walk yields the members it can see and stops at the first byte that
//! does not fit. Nested objects, arrays and strings are skipped without
//! recursion, so the cost is one pass over the bytes whatever their shape.

// Each user is behind its own feature.
#![cfg_attr(not(all(feature = "timeout", feature = "retry")), allow(dead_code))]

use std::ops::Range;

/// One top-level member of a JSON object: where its key token (quotes
/// included) and its value are, and whether the value ended before the
/// input did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) key: Range<usize>,
    pub(crate) value: Range<usize>,
    pub(crate) complete: bool,
}

/// The top-level members of the object `json` holds, in order; none when
/// it does not start with an object.
pub(crate) fn members(json: &[u8]) -> Members<'_> {
    let mut s = Scanner { b: json, i: 0 };
    s.ws();
    let open = s.eat(b'{');
    Members { s, done: !open }
}

/// Whether a JSON string token (quotes included) is the key `name`: the
/// bytes `"name"`, or a short key with escapes that decodes to it.
pub(crate) fn key_is(token: &[u8], name: &str) -> bool {
    let plain = token.len() == name.len() + 2 && &token[1..token.len() - 1] == name.as_bytes();
    if plain {
        return true;
    }
    // Only a short key with an escape can still spell `name`.
    token.contains(&b'\\')
        && token.len() <= 8 * name.len() + 2
        && serde_json::from_slice::<String>(token).is_ok_and(|k| k == name)
}

/// Whether `data` is an error envelope: a JSON object with a top-level
/// `error` member (`{"error":{…}}`, or Anthropic's
/// `{"type":"error","error":{…}}`), leading white space allowed.
pub(crate) fn is_error_envelope(data: &[u8]) -> bool {
    let data = data.trim_ascii_start();
    members(data).any(|m| key_is(&data[m.key], "error"))
}

/// The iterator [`members`] returns.
pub(crate) struct Members<'a> {
    s: Scanner<'a>,
    done: bool,
}

impl Iterator for Members<'_> {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        if self.done {
            return None;
        }
        let s = &mut self.s;
        s.ws();
        let key_start = s.i;
        if s.peek() != Some(b'"') || !s.string() {
            self.done = true;
            return None;
        }
        let key = key_start..s.i;
        s.ws();
        if !s.eat(b':') {
            self.done = true;
            return None;
        }
        s.ws();
        let value_start = s.i;
        let complete = s.value();
        let value = value_start..s.i;
        s.ws();
        if !complete || !s.eat(b',') {
            self.done = true;
        }
        Some(Member {
            key,
            value,
            complete,
        })
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Skips a string starting at its opening quote; `false` when it is cut.
    fn string(&mut self) -> bool {
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return true,
                b'\\' => self.i += 1,
                _ => {}
            }
        }
        self.i = self.b.len();
        false
    }

    /// Skips one value; `false` when the input ends inside it (a literal
    /// or number that reaches the end counts as complete as far as it goes,
    /// so `{"stream":true` cut right after `true` is still seen).
    fn value(&mut self) -> bool {
        match self.peek() {
            None => false,
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    match c {
                        b'"' => {
                            if !self.string() {
                                return false;
                            }
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return true;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                false
            }
            Some(_) => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_and_values(json: &str) -> Vec<(&str, &str, bool)> {
        members(json.as_bytes())
            .map(|m| (&json[m.key], &json[m.value], m.complete))
            .collect()
    }

    #[test]
    fn top_level_members_only() {
        assert_eq!(
            keys_and_values(r#" {"a": {"b": [1, "}"]}, "c" : "d" ,"e":3}"#),
            vec![
                (r#""a""#, r#"{"b": [1, "}"]}"#, true),
                (r#""c""#, r#""d""#, true),
                (r#""e""#, "3", true),
            ]
        );
        assert_eq!(keys_and_values(r#"[{"a":1}]"#), vec![]);
        assert_eq!(keys_and_values(""), vec![]);
        // A cut input: seen up to the cut.
        assert_eq!(
            keys_and_values(r#"{"a":1,"b":"x"#),
            vec![(r#""a""#, "1", true), (r#""b""#, r#""x"#, false)]
        );
        assert_eq!(keys_and_values(r#"{"a" 1}"#), vec![]);
    }

    #[test]
    fn error_envelopes() {
        assert!(is_error_envelope(br#" {"error":{"message":"m"}}"#));
        assert!(is_error_envelope(br#"{"type":"error","error":{}}"#));
        assert!(is_error_envelope(br#"{"\u0065rror":1}"#));
        assert!(!is_error_envelope(
            br#"{"choices":[{"delta":{"content":"error"}}]}"#
        ));
        assert!(!is_error_envelope(br#"{"message":{"error":1}}"#));
        assert!(!is_error_envelope(b"[DONE]"));
    }

    #[test]
    fn escaped_keys() {
        assert!(key_is(br#""model""#, "model"));
        assert!(key_is(br#""mod\u0065l""#, "model"));
        assert!(!key_is(br#""models""#, "model"));
        assert!(!key_is(br#""mode\"""#, "model"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for m in members(&bytes) {
                proptest::prop_assert!(m.key.end <= m.value.start && m.value.end <= bytes.len());
            }
        }
    }
}
