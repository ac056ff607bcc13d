//! The provider error fixtures and the canonical envelope check.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Deserialize;

/// One upstream error response and what the envelope must say about it.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub status: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    pub expect: Expect,
}

/// What the canonical envelope must say.
#[derive(Debug, Deserialize)]
pub struct Expect {
    pub status: u16,
    #[serde(rename = "type")]
    pub ty: String,
    pub code: String,
    #[serde(default)]
    pub param: Option<String>,
    pub retryable: bool,
    #[serde(default)]
    pub retry_after_s: Option<u64>,
}

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

/// The cases of `tests/fixtures/provider-errors.json`.
pub fn cases() -> Vec<Case> {
    let raw = include_str!("../fixtures/provider-errors.json");
    let file: File = serde_json::from_str(raw).expect("fixture file parses");
    assert!(file.cases.len() >= 20, "fixture file lost cases");
    file.cases
}

impl Case {
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap()
    }

    pub fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in &self.headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The upstream response this case describes.
    pub fn response<B: From<Bytes>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(Bytes::from(self.body.clone())));
        *res.status_mut() = self.status();
        *res.headers_mut() = self.header_map();
        res
    }

    /// The same response as a plan for the scripted upstream.
    pub fn plan(&self) -> super::Plan {
        self.headers.iter().fold(
            super::Plan::status(self.status).body(self.body.clone()),
            |plan, (k, v)| plan.header(k, v),
        )
    }
}

/// Parses a canonical envelope and returns its `error` object.
pub fn envelope(body: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 1, "only `error` at the top: {v}");
    let err = v["error"].clone();
    let keys: Vec<_> = err
        .as_object()
        .expect("error is an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys.len(), 4, "message, type, param, code: {err}");
    for k in ["message", "type", "param", "code"] {
        assert!(err.get(k).is_some(), "missing {k}: {err}");
    }
    assert!(err["message"].is_string() && err["type"].is_string() && err["code"].is_string());
    assert!(err["param"].is_null() || err["param"].is_string());
    err
}
