//! gRPC status codes and their mapping to and from HTTP statuses.

use http::{HeaderMap, HeaderName, StatusCode};

use super::ErrorKind;

/// The gRPC status codes, by their wire numbers.
#[allow(missing_docs, dead_code)]
pub(crate) mod code {
    pub(crate) const OK: i32 = 0;
    pub(crate) const CANCELLED: i32 = 1;
    pub(crate) const UNKNOWN: i32 = 2;
    pub(crate) const INVALID_ARGUMENT: i32 = 3;
    pub(crate) const DEADLINE_EXCEEDED: i32 = 4;
    pub(crate) const NOT_FOUND: i32 = 5;
    pub(crate) const ALREADY_EXISTS: i32 = 6;
    pub(crate) const PERMISSION_DENIED: i32 = 7;
    pub(crate) const RESOURCE_EXHAUSTED: i32 = 8;
    pub(crate) const FAILED_PRECONDITION: i32 = 9;
    pub(crate) const ABORTED: i32 = 10;
    pub(crate) const OUT_OF_RANGE: i32 = 11;
    pub(crate) const UNIMPLEMENTED: i32 = 12;
    pub(crate) const INTERNAL: i32 = 13;
    pub(crate) const UNAVAILABLE: i32 = 14;
    pub(crate) const DATA_LOSS: i32 = 15;
    pub(crate) const UNAUTHENTICATED: i32 = 16;
}

/// The gRPC code an HTTP error status is answered with.
pub(crate) fn code_for_status(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 405 | 409 | 413 | 415 | 422 => code::INVALID_ARGUMENT,
        401 => code::UNAUTHENTICATED,
        402 => code::FAILED_PRECONDITION,
        403 => code::PERMISSION_DENIED,
        404 => code::NOT_FOUND,
        408 | 504 => code::DEADLINE_EXCEEDED,
        429 => code::RESOURCE_EXHAUSTED,
        501 => code::UNIMPLEMENTED,
        502 | 503 => code::UNAVAILABLE,
        400..=499 => code::INVALID_ARGUMENT,
        500..=599 => code::INTERNAL,
        _ => code::UNKNOWN,
    }
}

/// The error kind and HTTP status a gRPC code stands for; `None` for `OK`.
pub(crate) fn kind_for_code(grpc: i32) -> Option<(ErrorKind, StatusCode)> {
    let kind = match grpc {
        code::OK => return None,
        code::INVALID_ARGUMENT | code::FAILED_PRECONDITION | code::OUT_OF_RANGE => {
            ErrorKind::InvalidRequest
        }
        code::ALREADY_EXISTS | code::ABORTED => {
            return Some((ErrorKind::InvalidRequest, StatusCode::CONFLICT))
        }
        code::DEADLINE_EXCEEDED => ErrorKind::Timeout,
        code::NOT_FOUND | code::UNIMPLEMENTED => ErrorKind::NotFound,
        code::PERMISSION_DENIED => ErrorKind::PermissionDenied,
        code::RESOURCE_EXHAUSTED => ErrorKind::RateLimited,
        code::UNAVAILABLE => ErrorKind::Unavailable,
        code::UNAUTHENTICATED => ErrorKind::Authentication,
        code::CANCELLED => ErrorKind::Upstream,
        // UNKNOWN, INTERNAL, DATA_LOSS and codes from the future.
        _ => ErrorKind::Internal,
    };
    Some((kind, kind.status()))
}

/// The `grpc-status` header, pre-parsed: looking a `&str` name up parses it
/// on every call, and this runs on every response of the retry layer and
/// the breaker.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Reads `grpc-status` from headers or trailers; `None` when absent or malformed.
pub(crate) fn status_code(headers: &HeaderMap) -> Option<i32> {
    let v = headers.get(GRPC_STATUS)?;
    std::str::from_utf8(v.as_bytes()).ok()?.trim().parse().ok()
}

/// Percent-encodes a `grpc-message` value as the gRPC HTTP/2 spec asks.
pub(crate) fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Decodes a percent-encoded `grpc-message`; invalid escapes are kept as sent.
pub(crate) fn decode_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn status_to_code_as_specified() {
        let c = |s| code_for_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(c(400), 3);
        assert_eq!(c(401), 16);
        assert_eq!(c(402), 9);
        assert_eq!(c(403), 7);
        assert_eq!(c(404), 5);
        assert_eq!(c(429), 8);
        assert_eq!(c(500), 13);
        assert_eq!(c(502), 14);
        assert_eq!(c(503), 14);
        assert_eq!(c(504), 4);
    }

    #[test]
    fn code_to_kind() {
        assert_eq!(kind_for_code(0), None);
        assert_eq!(kind_for_code(14).unwrap().0, ErrorKind::Unavailable);
        assert_eq!(kind_for_code(8).unwrap().0, ErrorKind::RateLimited);
        assert_eq!(kind_for_code(4).unwrap().0, ErrorKind::Timeout);
        assert_eq!(kind_for_code(16).unwrap().0, ErrorKind::Authentication);
        assert_eq!(kind_for_code(99).unwrap().0, ErrorKind::Internal);
        assert_eq!(kind_for_code(6).unwrap().1, StatusCode::CONFLICT);
        // Every kind's own code maps back to the same kind, except the
        // kinds gRPC has no code of their own for.
        for kind in ErrorKind::ALL {
            let back = kind_for_code(code_for_status(kind.status())).unwrap().0;
            match kind {
                ErrorKind::ContextLengthExceeded | ErrorKind::InsufficientBalance => {
                    assert_eq!(back, ErrorKind::InvalidRequest)
                }
                ErrorKind::QuotaExhausted => assert_eq!(back, ErrorKind::RateLimited),
                ErrorKind::Upstream | ErrorKind::CircuitOpen => {
                    assert_eq!(back, ErrorKind::Unavailable)
                }
                _ => assert_eq!(back, kind),
            }
        }
    }

    #[test]
    fn message_encoding() {
        assert_eq!(encode_message("a b%c"), "a b%25c");
        assert_eq!(encode_message("余额"), "%E4%BD%99%E9%A2%9D");
        assert_eq!(decode_message(b"%E4%BD%99%E9%A2%9D"), "余额");
        assert_eq!(decode_message(b"bad %zz %"), "bad %zz %");
        assert_eq!(decode_message(b"%4"), "%4");
    }

    proptest! {
        #[test]
        fn message_round_trip(s in ".*") {
            prop_assert_eq!(decode_message(encode_message(&s).as_bytes()), s);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_message(&bytes);
        }
    }
}
