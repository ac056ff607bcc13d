//! Credentials known by their length and a 64-bit fingerprint of their bytes
//! (ASCII case folded), never by the bytes themselves: no copy of a
//! credential is kept, and taking one costs no allocation.
//!
//! The fingerprint is a polynomial hash, so every window of a text can be
//! compared in one pass (a rolling hash, as in Rabin–Karp). Equal texts
//! always have equal fingerprints, so a credential is never missed; two
//! different texts sharing one only means a harmless extra `[redacted]`.

use std::ops::Range;

/// The base of the polynomial (odd, so that powers never vanish).
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;

fn fold(b: u8) -> u64 {
    u64::from(b.to_ascii_lowercase())
}

/// A value to remove: its length and the hash of its case-folded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    len: usize,
    hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    #[cfg(test)]
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Fingerprint {
            len: bytes.len(),
            hash: bytes
                .iter()
                .fold(0u64, |h, b| h.wrapping_mul(BASE).wrapping_add(fold(*b))),
        }
    }

    /// How many bytes the value has.
    #[cfg(feature = "normalize")]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every window of `hay` with this fingerprint, left to right.
    pub(crate) fn find(self, hay: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
        let n = self.len;
        let windows = if n == 0 {
            0
        } else {
            (hay.len() + 1).saturating_sub(n)
        };
        let high = BASE.wrapping_pow(u32::try_from(n).unwrap_or(u32::MAX));
        let mut hash = hay
            .iter()
            .take(n)
            .fold(0u64, |h, b| h.wrapping_mul(BASE).wrapping_add(fold(*b)));
        (0..windows).filter_map(move |i| {
            let found = (hash == self.hash).then_some(i..i + n);
            if let Some(&next) = hay.get(i + n) {
                hash = hash
                    .wrapping_mul(BASE)
                    .wrapping_add(fold(next))
                    .wrapping_sub(fold(hay[i]).wrapping_mul(high));
            }
            found
        })
    }
}

/// The running hash of the start of a text, from which the fingerprint of
/// any part of it follows in constant time: the hash of `s[i..j]` is
/// `P(j) − P(i)·BASE^(j−i)`.
#[cfg(feature = "normalize")]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prefix {
    len: usize,
    hash: u64,
}

#[cfg(feature = "normalize")]
impl Prefix {
    /// The prefix one byte longer.
    pub(crate) fn push(&mut self, b: u8) {
        self.hash = self.hash.wrapping_mul(BASE).wrapping_add(fold(b));
        self.len += 1;
    }

    /// The fingerprint of the bytes pushed since `start` was this prefix.
    pub(crate) fn since(&self, start: &Prefix) -> Fingerprint {
        let len = self.len - start.len;
        let high = BASE.wrapping_pow(u32::try_from(len).unwrap_or(u32::MAX));
        Fingerprint {
            len,
            hash: self.hash.wrapping_sub(start.hash.wrapping_mul(high)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_are_found_in_any_case() {
        let key = Fingerprint::of(b"Sk-Abc123");
        let hay = b"x sk-abc123, SK-ABC123 and sk-abc12";
        let found: Vec<_> = key.find(hay).collect();
        assert_eq!(found, [2..11, 13..22]);
        assert_eq!(key.find(b"short").count(), 0);
        assert_eq!(Fingerprint::of(b"").find(b"abc").count(), 0);
    }

    #[cfg(feature = "normalize")]
    #[test]
    fn parts_follow_from_prefixes() {
        let text = b"Bearer abcdefgh";
        let mut p = Prefix::default();
        let mut at7 = Prefix::default();
        for (i, b) in text.iter().enumerate() {
            if i == 7 {
                at7 = p;
            }
            p.push(*b);
        }
        assert_eq!(p.since(&at7), Fingerprint::of(b"abcdefgh"));
        assert_eq!(p.since(&Prefix::default()), Fingerprint::of(text));
    }

    proptest! {
        #[test]
        fn a_window_is_found_exactly_where_it_is(
            before in proptest::collection::vec(any::<u8>(), 0..50),
            needle in proptest::collection::vec(any::<u8>(), 1..30),
            after in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let hay = [&before[..], &needle[..], &after[..]].concat();
            let at = before.len();
            let found: Vec<_> = Fingerprint::of(&needle).find(&hay).collect();
            prop_assert!(found.contains(&(at..at + needle.len())));
            for r in found {
                prop_assert!(hay[r].eq_ignore_ascii_case(&needle));
            }
        }
    }
}
