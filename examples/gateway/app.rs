//! The gateway itself: what happens to each request, from its arrival to
//! the end of its response body.
//!
//! ```text
//! request ─ x-request-id ─ CONNECT? 405 ─ path joined onto the base (or 400)
//!         ─ body read whole (413, 408, 503 overloaded) ─ Forward (the stack)
//! response ─ x-request-id ─ ResponseBody (log line at the end, shutdown cut)
//! ```
//!
//! Kept apart from `main.rs` so that the end-to-end tests run the very same
//! code in-process.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http_resilience::collect::{CollectBody, CollectBodyLayer};
use tower_http_resilience::stack::ResilienceServerLayer;
use tower_http_resilience::{ApiError, BaseUri, BoxError, ErrorKind};

use crate::body::ResponseBody;
use crate::client::UpstreamClient;
use crate::forward::{BoxBody, CallInfo, Forward};
use crate::headers::{request_id, X_REQUEST_ID};
use crate::log::{Call, Log, PendingLine};
use crate::shutdown::Drain;

/// What the gateway is made of.
pub struct Setup {
    /// The resilience stack every call goes through.
    pub stack: ResilienceServerLayer,
    /// Where calls go.
    pub base: BaseUri,
    /// The upstream's name in `x-gateway-target` and the log (`default`
    /// for `--upstream`).
    pub upstream: String,
    pub client: UpstreamClient,
    /// The request-body limits, deadline and budget.
    pub bodies: CollectBodyLayer,
    pub log: Log,
    /// Ends the responses still running when the shutdown grace is over.
    pub drain: Drain,
}

/// The gateway: cheap to clone, one per connection.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    base: BaseUri,
    collect: CollectBody<Forward>,
    log: Log,
    drain: Drain,
}

impl Gateway {
    pub fn new(setup: Setup) -> Self {
        let stack = tower::Layer::layer(&setup.stack, setup.client);
        let forward = Forward::new(stack, &setup.upstream);
        Gateway {
            shared: Arc::new(Shared {
                base: setup.base,
                collect: tower::Layer::layer(&setup.bodies, forward),
                log: setup.log,
                drain: setup.drain,
            }),
        }
    }

    /// Answers one request; never fails.
    pub async fn handle<B>(&self, mut req: Request<B>) -> Response<ResponseBody>
    where
        B: Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let id = request_id(req.headers());
        req.headers_mut().insert(X_REQUEST_ID, id.clone());
        let call = Call {
            request_id: id.to_str().unwrap_or_default().to_owned(),
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            model: None,
            target: "-".to_owned(),
            status: 0,
            code: None,
            attempts: 0,
            streaming: false,
        };
        let res = match self.route(req).await {
            Ok(res) => res,
            Err(err) => {
                let mut res = err.to_response::<Full<Bytes>>();
                res.extensions_mut().insert(err);
                res.map(|b| b.map_err(|never| match never {}).boxed_unsync())
            }
        };
        let (mut parts, body) = res.into_parts();
        parts.headers.insert(X_REQUEST_ID, id);
        let line = PendingLine::new(self.shared.log.clone(), outcome(call, &parts), started);
        let body = ResponseBody::new(body, &parts.headers, line, &self.shared.drain);
        Response::from_parts(parts, body)
    }

    /// The response, or the error the gateway answers itself.
    async fn route<B>(&self, mut req: Request<B>) -> Result<Response<BoxBody>, ApiError>
    where
        B: Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        if req.method() == Method::CONNECT {
            return Err(ApiError::new(ErrorKind::InvalidRequest)
                .with_status(StatusCode::METHOD_NOT_ALLOWED)
                .with_code("method_not_allowed")
                .with_message("CONNECT is not supported: the gateway is not a tunnel"));
        }
        let uri = self.shared.base.join(req.uri())?;
        *req.uri_mut() = uri;
        self.shared.collect.clone().oneshot(req).await
    }
}

/// The call as its response starts.
fn outcome(mut call: Call, res: &http::response::Parts) -> Call {
    call.status = res.status.as_u16();
    call.code = res
        .extensions
        .get::<ApiError>()
        .map(|e| e.code().to_owned());
    if let Some(info) = res.extensions.get::<CallInfo>() {
        call.model.clone_from(&info.model);
        call.target.clone_from(&info.target);
        call.streaming = info.streaming;
        call.attempts = info.attempts;
    }
    call
}
