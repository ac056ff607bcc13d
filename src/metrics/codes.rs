//! The bounded label values of calls and retries: the crate's error codes,
//! and the keys of the series they label, made once.

use std::sync::LazyLock;

use ::metrics::{Key, Label};

use super::{CALLS_TOTAL, RETRIES_TOTAL};
use crate::{ApiError, ErrorKind};

/// The `code` of a success.
pub(crate) const NONE: &str = "none";
/// The `code` of a call whose caller went away first.
pub(crate) const CLIENT_CLOSED: &str = "client_closed";

/// The code an error is counted under: its own when the crate knows it for
/// its kind, else its kind's default (an upstream may send any text).
pub(crate) fn bounded_code(err: &ApiError) -> &'static str {
    let kind = err.kind();
    kind.known_codes()
        .iter()
        .find(|&&known| known == err.code())
        .copied()
        .unwrap_or_else(|| kind.default_code())
}

/// Every known code, in table order.
fn all_codes() -> impl Iterator<Item = &'static str> {
    ErrorKind::ALL
        .iter()
        .flat_map(|kind| kind.known_codes().iter().copied())
}

/// The keys of one series for every known code, by position in
/// [`all_codes`].
struct ByCode(Box<[(&'static str, Key)]>);

impl ByCode {
    fn new(make: impl Fn(&'static str) -> Key) -> Self {
        ByCode(all_codes().map(|code| (code, make(code))).collect())
    }

    fn get(&self, code: &'static str) -> &Key {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, key)| key)
            .expect("a bounded code is a known code")
    }
}

static ERRORS: LazyLock<ByCode> = LazyLock::new(|| {
    ByCode::new(|code| {
        let labels = vec![
            Label::from_static_parts("outcome", "error"),
            Label::from_static_parts("code", code),
        ];
        Key::from_parts(CALLS_TOTAL, labels)
    })
});

static RETRIES: LazyLock<ByCode> = LazyLock::new(|| {
    ByCode::new(|code| {
        Key::from_parts(
            RETRIES_TOTAL,
            vec![Label::from_static_parts("reason", code)],
        )
    })
});

/// The `resilience_calls_total` key of a call that failed with `code` (a
/// [bounded](bounded_code) code).
pub(crate) fn error_key(code: &'static str) -> &'static Key {
    ERRORS.get(code)
}

/// The `resilience_retries_total` key of a retry after `code`.
pub(crate) fn retry_key(code: &'static str) -> &'static Key {
    RETRIES.get(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_bounded_and_found() {
        let err = ApiError::new(ErrorKind::RateLimited).with_code("made_up_by_an_upstream");
        assert_eq!(bounded_code(&err), "rate_limit_exceeded");
        let err = ApiError::new(ErrorKind::Unavailable).with_code("overloaded");
        assert_eq!(bounded_code(&err), "overloaded");
        for code in all_codes() {
            let labels: Vec<_> = error_key(code)
                .labels()
                .map(|l| l.value().to_owned())
                .collect();
            assert_eq!(labels, ["error", code]);
            assert_eq!(retry_key(code).labels().next().unwrap().value(), code);
        }
    }
}
