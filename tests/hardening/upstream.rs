//! The upstream behind the gateway: records what reached it, and answers by
//! path.
//!
//! | path | answer |
//! |---|---|
//! | `/ping` | 200, not counted (a round trip of the test's own) |
//! | `/sse/gated` | an event stream: one event, then, once the test calls [`Upstream::release`], `[DONE]` |
//! | `/sse/gzip` | an event stream with `content-encoding: gzip` |
//! | `/hop` | 200 with hop-by-hop headers and one that `Connection` names |
//! | `/upload` | reads the body to its end, 200 with its length |
//! | `/hang` | 200 once the test calls [`Upstream::release`] |
//! | anything else | 200 `{}` |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

use super::raw::bounded;
use crate::gateway_harness::Options;
use crate::support;

struct Seen {
    calls: watch::Sender<u32>,
    released: watch::Sender<bool>,
    last: Mutex<Option<(String, HeaderMap)>>,
    uploaded: Mutex<u64>,
}

/// The upstream, on its own thread and runtime.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
}

pub fn spawn_upstream() -> Upstream {
    let seen = Arc::new(Seen {
        calls: watch::channel(0).0,
        released: watch::channel(false).0,
        last: Mutex::new(None),
        uploaded: Mutex::new(0),
    });
    let state = seen.clone();
    let addr = support::spawn_server(move || Router::new().fallback(answer).with_state(state));
    Upstream { addr, seen }
}

impl Upstream {
    /// The gateway's defaults in front of this upstream.
    pub fn options(&self) -> Options {
        Options::new(format!("http://{}", self.addr))
    }

    /// Requests that reached it (`/ping` aside).
    pub fn calls(&self) -> u32 {
        *self.seen.calls.borrow()
    }

    /// Waits (bounded in real time) until `n` requests reached it.
    pub async fn wait_for_calls(&self, n: u32) {
        let mut rx = self.seen.calls.subscribe();
        bounded(rx.wait_for(|c| *c >= n)).await.unwrap();
    }

    /// Lets every gated stream finish.
    pub fn release(&self) {
        self.seen.released.send_replace(true);
    }

    /// The path and query of the last request.
    pub fn last_target(&self) -> String {
        self.seen.last.lock().unwrap().as_ref().unwrap().0.clone()
    }

    /// A header of the last request.
    pub fn last_header(&self, name: &str) -> Option<String> {
        let last = self.seen.last.lock().unwrap();
        let headers = &last.as_ref().unwrap().1;
        headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    /// Bytes of request bodies read by `/upload`.
    pub fn uploaded(&self) -> u64 {
        *self.seen.uploaded.lock().unwrap()
    }

    /// A round trip to the upstream itself.
    pub async fn ping(&self) {
        let req = http::Request::get(format!("http://{}/ping", self.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        bounded(support::send(req)).await;
    }
}

async fn answer(State(seen): State<Arc<Seen>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/ping" {
        return Response::new(Body::empty());
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    *seen.last.lock().unwrap() = Some((target, req.headers().clone()));
    seen.calls.send_modify(|c| *c += 1);
    match path.as_str() {
        "/sse/gated" => {
            let mut released = seen.released.subscribe();
            let events =
                futures_util::stream::once(async { Bytes::from_static(b"data: {\"n\":1}\n\n") })
                    .chain(futures_util::stream::once(async move {
                        let _ = released.wait_for(|r| *r).await;
                        Bytes::from_static(b"data: [DONE]\n\n")
                    }))
                    .map(|b| Ok::<_, Infallible>(Frame::data(b)));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::new(http_body_util::StreamBody::new(events)))
                .unwrap()
        }
        "/sse/gzip" => Response::builder()
            .header("content-type", "text/event-stream")
            .header("content-encoding", "gzip")
            .body(Body::from(&b"\x1f\x8b\x08\x00\x00\x00\x00\x00"[..]))
            .unwrap(),
        "/hop" => Response::builder()
            .header("connection", "x-up-secret")
            .header("x-up-secret", "1")
            .header("proxy-authenticate", "Basic")
            .header("keep-alive", "timeout=5")
            .header("x-up-kept", "1")
            .body(Body::from("{}"))
            .unwrap(),
        "/hang" => {
            let mut released = seen.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            Response::new(Body::from("{}"))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    n += data.len() as u64;
                }
            }
            *seen.uploaded.lock().unwrap() += n;
            Response::new(Body::from(format!("{{\"bytes\":{n}}}")))
        }
        _ => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    }
}
