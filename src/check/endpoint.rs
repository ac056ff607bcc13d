//! Which requests are checked, and which fields apply to each: [`Endpoint`].

use http::header::CONTENT_ENCODING;
use http::{Method, Request};

use crate::content_type::is_json;

/// An OpenAI-shaped endpoint the checks know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST …/chat/completions`: `messages`, all sampling fields.
    Chat,
    /// `POST …/completions`: `prompt`, sampling fields, `max_tokens ≥ 0`.
    Completions,
    /// `POST …/embeddings`: `input`, `model`.
    Embeddings,
}

impl Endpoint {
    /// The endpoint a request is for, when its body is to be checked: a
    /// `POST` to one of the paths, whose body is JSON (or says nothing of
    /// its type) and not compressed.
    pub(crate) fn of<B>(req: &Request<B>) -> Option<Endpoint> {
        if req.method() != Method::POST {
            return None;
        }
        let path = req.uri().path();
        let endpoint = if path.ends_with("/chat/completions") {
            Endpoint::Chat
        } else if path.ends_with("/completions") {
            Endpoint::Completions
        } else if path.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else {
            return None;
        };
        let headers = req.headers();
        let json = headers.get(http::header::CONTENT_TYPE).is_none() || is_json(headers);
        let identity = headers
            .get(CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
        (json && identity).then_some(endpoint)
    }

    /// Whether the request names its model in the path (Azure OpenAI's
    /// `/openai/deployments/NAME/…`), so `model` may be left out.
    pub(crate) fn model_in_path(path: &str) -> bool {
        path.contains("/deployments/")
    }

    /// Whether `max_tokens` may be 0 (legacy completions: `echo` with no
    /// output scores a prompt).
    pub(crate) fn allows_zero_max_tokens(self) -> bool {
        self == Endpoint::Completions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, ct: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn paths_and_methods() {
        let json = Some("application/json");
        let of = |m, u, ct| Endpoint::of(&req(m, u, ct));
        assert_eq!(
            of("POST", "/v1/chat/completions", json),
            Some(Endpoint::Chat)
        );
        assert_eq!(
            of(
                "POST",
                "/openai/deployments/d/chat/completions?api-version=1",
                json
            ),
            Some(Endpoint::Chat)
        );
        assert_eq!(
            of("POST", "/v1/completions", json),
            Some(Endpoint::Completions)
        );
        assert_eq!(
            of("POST", "/v1/embeddings", None),
            Some(Endpoint::Embeddings)
        );
        assert_eq!(of("GET", "/v1/chat/completions", json), None);
        assert_eq!(of("POST", "/v1/chat/completions/", json), None);
        assert_eq!(of("POST", "/v1/models", json), None);
        assert_eq!(of("POST", "/v1/chat/completions", Some("text/plain")), None);
        assert_eq!(
            of(
                "POST",
                "/v1/chat/completions",
                Some("application/json; charset=utf-8")
            ),
            Some(Endpoint::Chat)
        );
    }

    #[test]
    fn compressed_bodies_are_not_checked() {
        let mut r = req("POST", "/v1/chat/completions", Some("application/json"));
        r.headers_mut()
            .insert(CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
        assert_eq!(Endpoint::of(&r), None);
        r.headers_mut()
            .insert(CONTENT_ENCODING, http::HeaderValue::from_static("Identity"));
        assert_eq!(Endpoint::of(&r), Some(Endpoint::Chat));
    }
}
