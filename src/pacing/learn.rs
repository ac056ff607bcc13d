//! What a response says about the next calls to its key.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::config::MAX_HOLD;
use crate::hint::{exhausted_reset, ServerHints};
use crate::{ApiError, ErrorKind};

/// What a response teaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lesson {
    /// Nothing about the next calls.
    Nothing,
    /// The key is refused for this long.
    Hold(Duration),
    /// A 429: the key is refused for this long, unless its body says the
    /// quota is used up (waiting does not help then; the caller is told
    /// so by the upstream's own error).
    HoldUnlessQuota(Duration),
}

/// Reads a response's head:
/// - a 429 with a hint (`retry-after-ms`, `retry-after`,
///   `x-ratelimit-reset-*`, gRPC pushback): the hint, unless the body says
///   `insufficient_quota`;
/// - any response with `x-ratelimit-remaining-requests: 0` (or `-tokens`)
///   and the matching `x-ratelimit-reset-*`: the reset.
///
/// The longer of the two wins; a hold is at most [`MAX_HOLD`].
pub(crate) fn lesson(status: StatusCode, headers: &HeaderMap) -> Lesson {
    let exhausted = exhausted_reset(headers).filter(|d| !d.is_zero());
    if status == StatusCode::TOO_MANY_REQUESTS {
        let hint = ServerHints::from_headers(headers).retry_after();
        return match hint.max(exhausted).filter(|d| !d.is_zero()) {
            Some(d) => Lesson::HoldUnlessQuota(d.min(MAX_HOLD)),
            None => Lesson::Nothing,
        };
    }
    match exhausted {
        Some(d) => Lesson::Hold(d.min(MAX_HOLD)),
        None => Lesson::Nothing,
    }
}

/// What an error of the inner service teaches: a rate limit (not a quota)
/// with a wait is a hold.
pub(crate) fn lesson_of_error(error: &ApiError) -> Lesson {
    match (error.kind(), error.retry_after()) {
        (ErrorKind::RateLimited, Some(d)) if !d.is_zero() => Lesson::Hold(d.min(MAX_HOLD)),
        _ => Lesson::Nothing,
    }
}

const QUOTA: &[u8] = b"insufficient_quota";

/// How much of a 429's body is searched for [`QUOTA`].
pub(crate) const QUOTA_SCAN: usize = 4096;

/// Searches the start of a body for `insufficient_quota`, chunk by chunk,
/// across chunk boundaries, keeping only the last few bytes seen.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QuotaScan {
    scanned: usize,
    tail: [u8; QUOTA.len() - 1],
    tail_len: usize,
}

impl QuotaScan {
    /// Whether the search is over without a match.
    pub(crate) fn is_done(&self) -> bool {
        self.scanned >= QUOTA_SCAN
    }

    /// Reads the next chunk; true when the code is found.
    pub(crate) fn found_in(&mut self, chunk: &[u8]) -> bool {
        let chunk = &chunk[..chunk.len().min(QUOTA_SCAN - self.scanned.min(QUOTA_SCAN))];
        self.scanned += chunk.len();
        // The bytes kept from before, then the start of this chunk.
        let mut joint = [0u8; 2 * (QUOTA.len() - 1)];
        let head = chunk.len().min(QUOTA.len() - 1);
        joint[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        joint[self.tail_len..self.tail_len + head].copy_from_slice(&chunk[..head]);
        let joint = &joint[..self.tail_len + head];
        if contains(joint, QUOTA) || contains(chunk, QUOTA) {
            return true;
        }
        // Keep the last bytes seen, for a match across the next boundary.
        let keep = self.tail.len();
        if chunk.len() >= keep {
            self.tail.copy_from_slice(&chunk[chunk.len() - keep..]);
            self.tail_len = keep;
        } else {
            let from_tail = self.tail_len.min(keep - chunk.len());
            self.tail
                .copy_within(self.tail_len - from_tail..self.tail_len, 0);
            self.tail[from_tail..from_tail + chunk.len()].copy_from_slice(chunk);
            self.tail_len = from_tail + chunk.len();
        }
        false
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn what_is_learnt() {
        let ok = StatusCode::OK;
        let limited = StatusCode::TOO_MANY_REQUESTS;
        let secs = Duration::from_secs;
        let exhausted = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2s"),
        ]);
        assert_eq!(lesson(ok, &exhausted), Lesson::Hold(secs(2)));
        let left = headers(&[
            ("x-ratelimit-remaining-requests", "4"),
            ("x-ratelimit-reset-requests", "2s"),
        ]);
        assert_eq!(lesson(ok, &left), Lesson::Nothing);
        // A reset without a remaining count says nothing on a success.
        let no_count = headers(&[("x-ratelimit-reset-requests", "2s")]);
        assert_eq!(lesson(ok, &no_count), Lesson::Nothing);
        assert_eq!(lesson(limited, &no_count), Lesson::HoldUnlessQuota(secs(2)));
        let tokens = headers(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(lesson(ok, &tokens), Lesson::Hold(MAX_HOLD), "capped");
        let hinted = headers(&[("retry-after", "2")]);
        assert_eq!(lesson(limited, &hinted), Lesson::HoldUnlessQuota(secs(2)));
        assert_eq!(lesson(ok, &hinted), Lesson::Nothing);
        assert_eq!(lesson(limited, &HeaderMap::new()), Lesson::Nothing);
        assert_eq!(
            lesson(limited, &headers(&[("retry-after", "0")])),
            Lesson::Nothing
        );
        let both = headers(&[
            ("retry-after", "1"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "3s"),
        ]);
        assert_eq!(lesson(limited, &both), Lesson::HoldUnlessQuota(secs(3)));
    }

    #[test]
    fn errors_teach_rate_limits_only() {
        let limited =
            ApiError::new(ErrorKind::RateLimited).with_retry_after(Duration::from_secs(3));
        assert_eq!(
            lesson_of_error(&limited),
            Lesson::Hold(Duration::from_secs(3))
        );
        let quota =
            ApiError::new(ErrorKind::QuotaExhausted).with_retry_after(Duration::from_secs(3));
        assert_eq!(lesson_of_error(&quota), Lesson::Nothing);
    }

    fn found(chunks: &[&[u8]]) -> bool {
        let mut scan = QuotaScan::default();
        chunks.iter().any(|c| scan.found_in(c))
    }

    #[test]
    fn quota_is_found_across_chunks() {
        let body: &[u8] = br#"{"error":{"code":"insufficient_quota"}}"#;
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert!(found(&[a, b]), "split at {split}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert!(found(&bytes));
        assert!(!found(&[br#"{"error":{"code":"rate_limit_exceeded"}}"#]));
        let late = [vec![b' '; QUOTA_SCAN], QUOTA.to_vec()].concat();
        assert!(!found(&[&late]), "past the scanned start");
    }

    proptest! {
        #[test]
        fn chunked_search_matches_a_whole_search(
            body in proptest::collection::vec(prop_oneof![Just(b'x'), Just(b'_'), Just(b'q'), any::<u8>()], 0..200),
            at in 0usize..200,
            cuts in proptest::collection::vec(0usize..220, 0..6),
        ) {
            let mut body = body;
            let at = at.min(body.len());
            body.splice(at..at, QUOTA.iter().copied());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts { chunks.push(&body[from..c]); from = c; }
            chunks.push(&body[from..]);
            prop_assert!(found(&chunks));
        }
    }
}
