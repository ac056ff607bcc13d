//! The check of a raw request path, and [`UnsafePath`].

use std::fmt;

use crate::{ApiError, ErrorKind};

/// Why a path is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    NotAbsolute,
    DotSegment,
    EncodedSeparator,
    Backslash,
    Nul,
    DoubleEncoded,
    Malformed,
}

/// The value of the two hex digits at the start of `bytes`, if they are.
fn hex_pair(bytes: &[u8]) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    match bytes {
        [h, l, ..] => Some((hex(*h)? * 16 + hex(*l)?) as u8),
        _ => None,
    }
}

/// The value of the `%XX` escape at the start of `bytes`, if it is one.
fn escape_at(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b'%', rest @ ..] => hex_pair(rest),
        _ => None,
    }
}

/// Checks a raw request path (see the module docs).
pub(super) fn check(path: &str) -> Result<(), Reason> {
    if !path.starts_with('/') {
        return Err(Reason::NotAbsolute);
    }
    let bytes = path.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'\\' => return Err(Reason::Backslash),
            0 => return Err(Reason::Nul),
            b'%' => match escape_at(&bytes[i..]) {
                Some(b'/' | b'\\') => return Err(Reason::EncodedSeparator),
                Some(0) => return Err(Reason::Nul),
                Some(b'%') => {
                    // `%25` and two more digits: decoded once, an escape.
                    if let Some(b'.' | b'/' | b'\\' | 0) = hex_pair(&bytes[i + 3..]) {
                        return Err(Reason::DoubleEncoded);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    for segment in path[1..].split('/') {
        let name = segment.split(';').next().unwrap_or_default();
        if is_dot_segment(name.as_bytes()) {
            return Err(Reason::DotSegment);
        }
    }
    Ok(())
}

/// Whether a segment is `.` or `..` once percent-decoded.
fn is_dot_segment(mut s: &[u8]) -> bool {
    let mut dots = 0;
    while !s.is_empty() {
        if s[0] == b'.' {
            s = &s[1..];
        } else if escape_at(s) == Some(b'.') {
            s = &s[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// A request path [`BaseUri::join`](super::BaseUri::join) refuses: it could reach outside the
/// base's prefix once decoded.
///
/// Converts into an [`ApiError`] of kind
/// [`InvalidRequest`](ErrorKind::InvalidRequest) (400), whose message names
/// the reason but not the path.
///
/// # Example
///
/// ```
/// use tower_http_resilience::{ApiError, BaseUri};
///
/// let base: BaseUri = "https://api.example.com/tenant-a".parse().unwrap();
/// let err = base.join(&"/v1/..%2ftenant-b".parse().unwrap()).unwrap_err();
/// let err = ApiError::from(err);
/// assert_eq!((err.status().as_u16(), err.error_type()), (400, "invalid_request_error"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafePath {
    pub(super) reason: Reason,
}

impl fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            Reason::NotAbsolute => "it does not start with `/`",
            Reason::DotSegment => "it has a `.` or `..` segment",
            Reason::EncodedSeparator => "it has an encoded slash or backslash",
            Reason::Backslash => "it has a backslash",
            Reason::Nul => "it has a NUL byte",
            Reason::DoubleEncoded => "it has a doubly encoded `.`, slash, backslash or NUL",
            Reason::Malformed => "it does not make a valid URI",
        };
        write!(f, "the request path is not allowed: {why}")
    }
}

impl std::error::Error for UnsafePath {}

impl From<UnsafePath> for ApiError {
    fn from(err: UnsafePath) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest).with_message(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_way_out_of_the_prefix() {
        let refused = [
            ("/v1/../tenant-b", Reason::DotSegment),
            ("/v1/./x", Reason::DotSegment),
            ("/..", Reason::DotSegment),
            ("/v1/%2e%2e/tenant-b", Reason::DotSegment),
            ("/v1/%2E%2E/tenant-b", Reason::DotSegment),
            ("/v1/.%2e/tenant-b", Reason::DotSegment),
            ("/v1/%2e/x", Reason::DotSegment),
            ("/v1/..;x=1/tenant-b", Reason::DotSegment),
            ("/v1/..%2ftenant-b", Reason::EncodedSeparator),
            ("/v1/..%2Ftenant-b", Reason::EncodedSeparator),
            ("/v1/..%5ctenant-b", Reason::EncodedSeparator),
            ("/v1/..%5Ctenant-b", Reason::EncodedSeparator),
            ("/v1/..\\tenant-b", Reason::Backslash),
            ("/v1/a%00b", Reason::Nul),
            ("/v1/%252e%252e/x", Reason::DoubleEncoded),
            ("/v1/%252F", Reason::DoubleEncoded),
            ("*", Reason::NotAbsolute),
        ];
        for (path, reason) in refused {
            assert_eq!(check(path), Err(reason), "{path}");
        }
        for fine in [
            "/v1/...",
            "/v1/.well-known",
            "/v1/a..b",
            "/v1/%41",
            "/v1/50%25",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }
}
