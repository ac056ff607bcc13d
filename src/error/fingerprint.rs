//! Credentials known by their length, their first four bytes and a 64-bit
//! hash of their bytes (ASCII case folded), not by a copy of them: taking
//! one from a request costs no allocation, whatever backs the request's
//! bytes.
//!
//! The hash is a polynomial one, so every window of a text can be compared
//! in one pass (a rolling hash, as in Rabin–Karp); the first four bytes rule
//! out, cheaply, the texts that cannot hold the value (most header values).
//! Equal texts always have equal fingerprints, so a credential is never
//! missed; two different texts sharing one only mean a harmless extra
//! `[redacted]`.

use std::ops::Range;

/// The base of the polynomial (odd, so that powers never vanish).
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;

/// ASCII lower case, by table (one load a byte on the hot path).
const FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).to_ascii_lowercase();
        i += 1;
    }
    t
};

fn fold(b: u8) -> u8 {
    FOLD[usize::from(b)]
}

/// The polynomial hash of `bytes`, case folded: `Σ fold(bᵢ)·BASE^(n−1−i)`,
/// computed four bytes a step so that the multiplications overlap.
fn hash(bytes: &[u8]) -> u64 {
    const B2: u64 = BASE.wrapping_mul(BASE);
    const B3: u64 = B2.wrapping_mul(BASE);
    const B4: u64 = B3.wrapping_mul(BASE);
    let mut chunks = bytes.chunks_exact(4);
    let mut h = 0u64;
    for c in &mut chunks {
        let block = u64::from(fold(c[0]))
            .wrapping_mul(B3)
            .wrapping_add(u64::from(fold(c[1])).wrapping_mul(B2))
            .wrapping_add(u64::from(fold(c[2])).wrapping_mul(BASE))
            .wrapping_add(u64::from(fold(c[3])));
        h = h.wrapping_mul(B4).wrapping_add(block);
    }
    chunks.remainder().iter().fold(h, |h, b| {
        h.wrapping_mul(BASE).wrapping_add(u64::from(fold(*b)))
    })
}

/// The first four bytes of `bytes`, case folded (zeros past its end).
#[cfg(any(test, feature = "normalize"))]
fn anchor(bytes: &[u8]) -> [u8; 4] {
    let mut a = [0; 4];
    for (slot, b) in a.iter_mut().zip(bytes) {
        *slot = fold(*b);
    }
    a
}

/// A value to remove: its length, its first four bytes and the hash of all
/// of them, case folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    len: u32,
    anchor: [u8; 4],
    hash: u64,
}

impl Fingerprint {
    /// A placeholder for a slot not in use.
    #[cfg(feature = "normalize")]
    pub(crate) const EMPTY: Fingerprint = Fingerprint {
        len: 0,
        anchor: [0; 4],
        hash: 0,
    };

    /// The fingerprint of `bytes` (a value longer than 4 GiB is known by its
    /// first 4 GiB).
    #[cfg(any(test, feature = "normalize"))]
    pub(crate) fn of(bytes: &[u8]) -> Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let bytes = &bytes[..len as usize];
        Fingerprint {
            len,
            anchor: anchor(bytes),
            hash: hash(bytes),
        }
    }

    /// How many bytes the value has.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Every window of `hay` with this fingerprint, left to right.
    pub(crate) fn find(self, hay: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
        let n = self.len();
        // Setting bit 5 folds letters (and merges a few other bytes: a
        // false hit only costs the rolling pass).
        let loose = u32::from_le_bytes(self.anchor) | 0x2020_2020;
        let possible = n >= 4
            && hay.len() >= n
            && hay[..hay.len() - n + 4]
                .windows(4)
                .any(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) | 0x2020_2020 == loose);
        let windows = if possible { hay.len() + 1 - n } else { 0 };
        let (high, mut rolling) = if possible {
            let exp = u32::try_from(n).unwrap_or(u32::MAX);
            (BASE.wrapping_pow(exp), hash(&hay[..n]))
        } else {
            (0, 0)
        };
        (0..windows).filter_map(move |i| {
            let found = (rolling == self.hash).then_some(i..i + n);
            if let Some(&next) = hay.get(i + n) {
                rolling = rolling
                    .wrapping_mul(BASE)
                    .wrapping_add(u64::from(fold(next)))
                    .wrapping_sub(u64::from(fold(hay[i])).wrapping_mul(high));
            }
            found
        })
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

    #[test]
    fn the_block_hash_is_the_polynomial() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| b'A' + i as u8).collect();
            let plain = bytes.iter().fold(0u64, |h, b| {
                h.wrapping_mul(BASE)
                    .wrapping_add(u64::from(b.to_ascii_lowercase()))
            });
            assert_eq!(hash(&bytes), plain, "{len}");
        }
    }

    proptest! {
        #[test]
        fn a_window_is_found_exactly_where_it_is(
            before in proptest::collection::vec(any::<u8>(), 0..50),
            needle in proptest::collection::vec(any::<u8>(), 4..30),
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
