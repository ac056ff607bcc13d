//! An upstream behind the gateway that records what reached it: the
//! credential headers, the path and query, the JSON body's `model`.
//!
//! | `model` | answer |
//! |---|---|
//! | `echo-key` | 401 whose body and `x-echo` header repeat the `authorization` it got |
//! | `down` | 503 `service_unavailable` |
//! | `gone` | 404 `model_not_found` |
//! | `badkey` | 401 `invalid_api_key` |
//! | `invalid` | 400 `invalid_value` |
//! | `sse-error` | 200 event stream whose first event is an error |
//! | `hang` | never answers |
//! | anything else, `"stream": true` | 200 event stream: `data: {"upstream": NAME, "model": MODEL}`, then `data: [DONE]` |
//! | anything else | 200 `{"upstream": NAME, "model": MODEL}` |
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;

/// One request as the upstream saw it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub x_api_key: Option<String>,
    pub api_key: Option<String>,
    pub model: Option<String>,
    /// Every header value, to look for what must not be there.
    pub all_headers: String,
}

struct Shared {
    name: &'static str,
    seen: Mutex<Vec<Seen>>,
}

/// The upstream, on its own thread and runtime.
pub struct Recording {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Recording {
    /// Starts the upstream called `name`.
    pub fn spawn(name: &'static str) -> Self {
        let shared = Arc::new(Shared {
            name,
            seen: Mutex::new(Vec::new()),
        });
        let state = shared.clone();
        let addr =
            crate::support::spawn_server(move || Router::new().fallback(answer).with_state(state));
        Recording { addr, shared }
    }

    /// Every request that reached it, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let json = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let model = json["model"].as_str().map(str::to_owned);
    let stream = json["stream"].as_bool() == Some(true);
    let seen = Seen {
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_default(),
        authorization: header("authorization"),
        x_api_key: header("x-api-key"),
        api_key: header("api-key"),
        model: model.clone(),
        all_headers: parts
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
            .collect(),
    };
    shared.seen.lock().unwrap().push(seen.clone());
    let failure = |status: u16, kind: &str, code: &str| {
        let body = serde_json::json!({"error": {
            "message": format!("{} says {code}", shared.name),
            "type": kind, "param": null, "code": code
        }});
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let events = |text: String| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(text))
            .unwrap()
    };
    match model.as_deref() {
        Some("echo-key") => {
            let auth = seen.authorization.unwrap_or_default();
            let body = serde_json::json!({"error": {
                "message": format!("Incorrect API key provided: {auth}"),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
            }});
            Response::builder()
                .status(401)
                .header("content-type", "application/json")
                .header("x-echo", auth)
                .body(Body::from(body.to_string()))
                .unwrap()
        }
        Some("down") => failure(503, "server_error", "service_unavailable"),
        Some("gone") => failure(404, "invalid_request_error", "model_not_found"),
        Some("badkey") => failure(401, "invalid_request_error", "invalid_api_key"),
        Some("invalid") => failure(400, "invalid_request_error", "invalid_value"),
        Some("hang") => std::future::pending().await,
        Some("sse-error") => events(
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n"
                .to_owned(),
        ),
        _ => {
            let answer = serde_json::json!({"upstream": shared.name, "model": model});
            if stream {
                events(format!("data: {answer}\n\ndata: [DONE]\n\n"))
            } else {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(answer.to_string()))
                    .unwrap()
            }
        }
    }
}
