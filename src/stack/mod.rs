//! The standard stack: every layer of the crate, in the recommended order,
//! from one checked config.
//!
//! ```text
//! client:  NormalizeClient → total timeout → retry → pacing → circuit breaker → attempt timeout → client
//! server:  Normalize       → total timeout → retry → pacing → circuit breaker → attempt timeout → service
//! ```
//!
//! The order is the one the .NET standard resilience pipeline uses too: the
//! total timeout outside the retry (one deadline for all attempts, which the
//! retry layer reads and never sleeps past), the attempt timeout inside the
//! breaker (a hung attempt counts against the upstream and is retried). The
//! breaker sits inside the retry, so a breaker rejection is seen by the retry
//! layer, which neither retries it nor spends budget on it. Pacing sits
//! between them: each attempt is paced, and a held call takes no breaker
//! admission. The retry layer is the attempt loop: with
//! [`ResilienceLayer::targets`] it walks a list of targets (see
//! [`fallback`](crate::fallback)); by default a call has one.
//!
//! [`ResilienceConfig`] holds the settings with the gateway's defaults and
//! checks them when it builds the layer ([`ConfigError`] names the setting
//! at fault). [`ResilienceLayer`] is the client flavour (error type
//! [`ApiError`](crate::ApiError)); [`ResilienceLayer::server`] the server
//! flavour (error type `Infallible`, every failure rendered).
//! [`ResilienceServiceBuilderExt`] adds each layer to a `ServiceBuilder`
//! from its main setting, for a stack in another order or with fewer layers.
//!
//! # Example
//!
//! A client whose upstream fails twice and then answers; the caller sees one
//! success after three attempts:
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http_resilience::retry::Attempts;
//! use tower_http_resilience::stack::{ResilienceConfig, StackBody};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = tower::service_fn({
//!     let calls = calls.clone();
//!     move |_req: http::Request<StackBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let status = if n < 2 { 503 } else { 200 };
//!             let res = http::Response::builder().status(status).body(Full::new(Bytes::from("{}")))?;
//!             Ok::<_, tower_http_resilience::BoxError>(res)
//!         }
//!     }
//! });
//! let client = ServiceBuilder::new()
//!     .layer(ResilienceConfig::default().build().unwrap())
//!     .service(upstream);
//!
//! let res = client.oneshot(http::Request::new(Full::new(Bytes::from("{}")))).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.extensions().get::<Attempts>().unwrap().get(), 3);
//! # }
//! ```

mod builder;
mod config;
mod layer;

pub use builder::ResilienceServiceBuilderExt;
pub use config::{ConfigError, ResilienceConfig};
pub use layer::{
    ClientStack, DefaultKey, ResilienceLayer, ResilienceServerLayer, Resilient, ServerStack,
};

/// The request body the service inside the stack receives for a request body
/// `B`: the retry layer's replayable body around the timeout layer's.
///
/// A client inside the stack is built for it:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_http_resilience::stack::StackBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::builder(TokioExecutor::new()).build_http::<StackBody<Full<Bytes>>>();
/// # let _ = client;
/// # }
/// ```
pub type StackBody<B> = crate::retry::ReplayBody<crate::timeout::RequestBody<B>>;
