//! The gateway itself: what happens to each request, from its arrival to
//! the end of its response body.
//!
//! ```text
//! request ─ x-request-id ─ CONNECT? 405 ─ a client key? (or 401)
//!         ─ a safe path? (or 400) ─ body read whole (413, 408, 503 overloaded)
//!         ─ Forward (target, checks, the stack)
//! response ─ x-request-id ─ ResponseBody (log line at the end, shutdown cut)
//! ```
//!
//! Kept apart from `main.rs` so that the end-to-end tests run the very same
//! code in-process.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http_resilience::check::CheckLayer;
use tower_http_resilience::collect::{CollectBody, CollectBodyLayer};
use tower_http_resilience::{ApiError, BoxError, ErrorKind};

use crate::auth::ClientKeys;
use crate::body::ResponseBody;
use crate::client::UpstreamClient;
use crate::forward::{render, BoxBody, CallInfo, Forward};
use crate::headers::{request_id, X_REQUEST_ID};
use crate::log::{Call, Log, PendingLine};
use crate::routes::Routes;
use crate::shutdown::Drain;
use crate::stack::StackLayer;

/// What the gateway is made of.
pub struct Setup {
    /// The resilience stack every call goes through.
    pub stack: StackLayer,
    /// Where calls go.
    pub routes: Arc<Routes>,
    /// The request checks, when on.
    pub checks: Option<CheckLayer>,
    /// The keys clients must send, when set.
    pub client_keys: Option<ClientKeys>,
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
    routes: Arc<Routes>,
    client_keys: Option<ClientKeys>,
    collect: CollectBody<Forward>,
    log: Log,
    drain: Drain,
}

impl Gateway {
    pub fn new(setup: Setup) -> Self {
        let forward = Forward::new(
            &setup.stack,
            setup.client,
            setup.checks.as_ref(),
            setup.routes.clone(),
        );
        Gateway {
            shared: Arc::new(Shared {
                routes: setup.routes,
                client_keys: setup.client_keys,
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
            held_ms: None,
        };
        let res = match self.route(req).await {
            Ok(res) => res,
            Err(err) => render(err),
        };
        let (mut parts, body) = res.into_parts();
        parts.headers.insert(X_REQUEST_ID, id);
        let line = PendingLine::new(self.shared.log.clone(), outcome(call, &parts), started);
        let body = ResponseBody::new(body, &parts.headers, line, &self.shared.drain);
        Response::from_parts(parts, body)
    }

    /// The response, or the error the gateway answers itself.
    async fn route<B>(&self, req: Request<B>) -> Result<Response<BoxBody>, ApiError>
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
        if let Some(keys) = &self.shared.client_keys {
            if !keys.admits(req.headers()) {
                return Err(ClientKeys::refusal());
            }
        }
        // Refused before the body is read; the path is joined onto the
        // target's base later, with the same checks.
        self.shared.routes.upstreams()[0].base.join(req.uri())?;
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
        call.held_ms = info
            .held
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
    call
}
