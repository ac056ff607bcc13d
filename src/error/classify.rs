//! Deciding the kind, status and code of an upstream error from its status
//! and what its body said.

use http::StatusCode;

use super::dialect::Said;
use super::ErrorKind;

/// What an upstream error is, in the canonical model.
#[derive(Debug)]
pub(super) struct Verdict {
    pub(super) kind: ErrorKind,
    pub(super) status: StatusCode,
    pub(super) code: Option<String>,
    pub(super) param: Option<String>,
}

/// Decides kind, status, code and param: the status first, refined by the
/// body's `type`, `code` and `message`.
pub(super) fn classify(status: StatusCode, said: &Said) -> Verdict {
    let words = Words::new(said);
    let kind = refine_kind(status, &words);
    let status_out = match kind {
        // These kinds cover several statuses; keep the one sent.
        ErrorKind::InvalidRequest | ErrorKind::Internal => status,
        ErrorKind::Timeout if status == StatusCode::REQUEST_TIMEOUT => status,
        _ => kind.status(),
    };
    let mut code = known_code(kind, &words)
        .map(str::to_owned)
        .or_else(|| fallback_code(kind, status, &words, said).map(str::to_owned));
    let mut param = said.param.clone();
    if kind == ErrorKind::InvalidRequest && code.is_none() {
        // Framework rejections say what is wrong only in words.
        let message = said.message.as_deref().unwrap_or("");
        if let Some(field) = missing_field(message) {
            code = Some("missing_required_field".to_owned());
            param = param.or(Some(field));
        } else if speaks_of_bad_json(&words.message) {
            code = Some("invalid_json".to_owned());
        }
    }
    Verdict {
        kind,
        status: status_out,
        code,
        param,
    }
}

/// The body's words, normalized once: the code candidates (a non-numeric
/// `code`, then `type`) and the message in lower case.
struct Words {
    code: Option<String>,
    ty: Option<String>,
    message: String,
}

impl Words {
    fn new(said: &Said) -> Self {
        let token = |s: &str| s.trim().to_ascii_lowercase();
        Words {
            code: said
                .code
                .as_deref()
                .map(token)
                .filter(|c| !c.is_empty() && !c.bytes().all(|b| b.is_ascii_digit())),
            ty: said.ty.as_deref().map(token),
            message: said.message.as_deref().unwrap_or("").to_lowercase(),
        }
    }

    /// The code candidates, the code before the type.
    fn candidates(&self) -> impl Iterator<Item = &str> {
        self.code.as_deref().into_iter().chain(self.ty.as_deref())
    }

    fn said_any(&self, names: &[&str]) -> bool {
        self.candidates().any(|c| names.contains(&c))
    }
}

/// The kind: the status's, refined by what the body said.
fn refine_kind(status: StatusCode, words: &Words) -> ErrorKind {
    let mut kind = ErrorKind::from_status(status);
    if status.is_client_error() {
        if words.said_any(&[
            "insufficient_balance",
            "billing_error",
            "insufficient_credits",
            "payment_required",
        ]) || (status == StatusCode::FORBIDDEN && speaks_of_balance(&words.message))
        {
            kind = ErrorKind::InsufficientBalance;
        } else if status == StatusCode::TOO_MANY_REQUESTS
            && words.said_any(&["insufficient_quota", "quota_exceeded"])
        {
            kind = ErrorKind::QuotaExhausted;
        } else if kind == ErrorKind::InvalidRequest
            && (words.said_any(&["context_length_exceeded"])
                || [
                    "context length",
                    "context_length_exceeded",
                    "maximum context",
                ]
                .iter()
                .any(|w| words.message.contains(w)))
        {
            kind = ErrorKind::ContextLengthExceeded;
        }
    }
    // A known code of another kind with the same status names that kind
    // (503 `circuit_open`, 429 `insufficient_quota`, …); the code is looked
    // at before the type, and a code the kind knows itself settles it.
    for c in words.candidates() {
        if kind.known_codes().contains(&c) {
            break;
        }
        if let Some(k) = ErrorKind::ALL
            .iter()
            .find(|k| k.status() == kind.status() && k.known_codes().contains(&c))
        {
            kind = *k;
            break;
        }
    }
    kind
}

/// The first candidate the kind knows as one of its codes.
fn known_code(kind: ErrorKind, words: &Words) -> Option<&'static str> {
    let known = kind.known_codes();
    words
        .candidates()
        .find_map(|c| known.iter().find(|k| **k == c).copied())
}

/// A code read from the status or the message when the body named none the
/// kind knows.
fn fallback_code(
    kind: ErrorKind,
    status: StatusCode,
    words: &Words,
    said: &Said,
) -> Option<&'static str> {
    match kind {
        ErrorKind::Unavailable
            if status.as_u16() == 529 || words.said_any(&["overloaded", "overloaded_error"]) =>
        {
            Some("overloaded")
        }
        ErrorKind::NotFound
            if words.message.contains("model") || said.param.as_deref() == Some("model") =>
        {
            Some("model_not_found")
        }
        ErrorKind::InvalidRequest => match status.as_u16() {
            405 => Some("method_not_allowed"),
            409 => Some("conflict"),
            413 => Some("request_too_large"),
            415 => Some("unsupported_media_type"),
            _ => None,
        },
        _ => None,
    }
}

/// `missing field `model`` (serde) → `model`.
fn missing_field(message: &str) -> Option<String> {
    let rest = &message[message.find("missing field `")? + "missing field `".len()..];
    let field = &rest[..rest.find('`')?];
    let ok = !field.is_empty()
        && field.len() <= 64
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    ok.then(|| field.to_owned())
}

fn speaks_of_bad_json(lower: &str) -> bool {
    lower.contains("json")
        && (lower.contains("parse") || lower.contains("syntax") || lower.contains("invalid json"))
}

fn speaks_of_balance(lower: &str) -> bool {
    ["balance", "billing", "credit", "余额", "欠费"]
        .iter()
        .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_are_read_from_serde_messages() {
        assert_eq!(
            missing_field("missing field `model` at line 1").as_deref(),
            Some("model")
        );
        assert_eq!(missing_field("missing field `` here"), None);
        assert_eq!(missing_field("missing field `a b`"), None);
        assert_eq!(missing_field("no field named"), None);
    }
}
