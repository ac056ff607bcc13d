//! What an upstream error body says, whatever its dialect: the fields of the
//! envelope, read from JSON of several shapes or from plain text.

use http::HeaderMap;
use serde_json::Value;

/// The longest plain-text body kept as a message.
const MAX_TEXT_MESSAGE: usize = 512;

/// What a body said, in any dialect.
#[derive(Debug, Default)]
pub(super) struct Said {
    pub(super) message: Option<String>,
    pub(super) ty: Option<String>,
    pub(super) code: Option<String>,
    pub(super) param: Option<String>,
}

/// Reads what a body says, whatever its dialect. JSON that is cut short or
/// malformed, HTML, binary and empty bodies say nothing.
pub(super) fn read_body(headers: &HeaderMap, body: &[u8]) -> Said {
    // A UTF-8 byte-order mark counts as white space here.
    let trimmed = body
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(body)
        .trim_ascii();
    let Some(&first) = trimmed.first() else {
        return Said::default();
    };
    if matches!(first, b'{' | b'[') {
        return serde_json::from_slice::<Value>(trimmed)
            .map(|v| read_json(&v))
            .unwrap_or_default();
    }
    let is_html = first == b'<'
        || headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    if is_html {
        return Said::default();
    }
    // Plain text: the first line, if it is text.
    let Ok(text) = std::str::from_utf8(trimmed) else {
        return Said::default();
    };
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() || line.chars().any(|c| c.is_control() && c != '\t') {
        return Said::default();
    }
    Said {
        message: Some(crate::util::truncate(line, MAX_TEXT_MESSAGE).to_owned()),
        ..Said::default()
    }
}

fn read_json(v: &Value) -> Said {
    // The envelope may come wrapped in a one-element array.
    let v = match v {
        Value::Array(items) => match items.first() {
            Some(first) => first,
            None => return Said::default(),
        },
        other => other,
    };
    let Value::Object(top) = v else {
        return Said::default();
    };
    match top.get("error") {
        // `{"error":{"message","type","code","param"}}`, or
        // `{"type":"error","error":{"type","message"}}`.
        Some(Value::Object(err)) => Said {
            message: string(err.get("message").or_else(|| err.get("msg"))),
            ty: string(err.get("type")).or_else(|| string(err.get("status"))),
            code: string(err.get("code")),
            param: string(err.get("param")),
        },
        // `{"error":"…","type":…,"code":…}`.
        Some(Value::String(message)) => Said {
            message: Some(message.clone()),
            ty: string(top.get("type")).filter(|t| t != "error"),
            code: string(top.get("code")),
            param: string(top.get("param")),
        },
        _ => read_flat(top),
    }
}

/// `{"message": …}` or `{"detail": …}`, with `type`, `code` and `param`
/// beside them.
fn read_flat(top: &serde_json::Map<String, Value>) -> Said {
    let mut said = Said {
        message: string(top.get("message")),
        ty: string(top.get("type")).filter(|t| t != "error"),
        code: string(top.get("code")),
        param: string(top.get("param")),
    };
    if said.message.is_some() {
        return said;
    }
    match top.get("detail") {
        Some(Value::String(d)) => said.message = Some(d.clone()),
        // Validation errors: a list of `{loc, msg, type}`.
        Some(Value::Array(items)) => {
            if let Some(Value::Object(first)) = items.first() {
                said.message = string(first.get("msg"));
                if said.param.is_none() {
                    said.param = first
                        .get("loc")
                        .and_then(Value::as_array)
                        .and_then(|loc| loc.last())
                        .and_then(|l| string(Some(l)));
                }
            }
        }
        _ => {}
    }
    said
}

/// A JSON string or number as a string; anything else is absent.
fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(body: &str) -> Said {
        read_body(&HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn white_space_and_a_byte_order_mark_are_skipped() {
        let s = said("\u{feff}  {\"message\":\"m\"}\n");
        assert_eq!(s.message.as_deref(), Some("m"));
        assert!(said(" \n\t").message.is_none());
    }

    #[test]
    fn html_and_binary_say_nothing() {
        assert!(said("<html><body>502</body></html>").message.is_none());
        assert!(said("bad\u{1}gateway").message.is_none());
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/html; charset=utf-8".parse().unwrap());
        assert!(read_body(&h, b"Bad Gateway").message.is_none());
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let s = said(&"é".repeat(400));
        let m = s.message.unwrap();
        assert!(m.len() <= MAX_TEXT_MESSAGE);
        assert!(m.chars().all(|c| c == 'é'));
    }
}
