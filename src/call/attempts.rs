//! [`Attempts`]: how many attempts a call made.
// Reached by users through the retry module.
#![cfg_attr(not(feature = "retry"), allow(unreachable_pub, dead_code))]

use http::Response;

use super::CallContext;
use crate::ApiError;

/// How many attempts a call made, first one included: every attempt that
/// was sent.
///
/// The retry layer puts it in the extensions of every error
/// ([`ApiError::extensions`](crate::ApiError::extensions)) and of every
/// response that took more than one attempt; a total timeout that cuts a
/// call short puts the attempts sent so far on its error. A response without
/// it took one attempt (a first-attempt success is not marked, which saves
/// three allocations per call): read it with [`Attempts::of`].
///
/// Read from the extensions of a request inside the retry layer, it is the
/// number of the attempt under way.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_http_resilience::retry::{Attempts, Backoff, ReplayBody, RetryLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // An upstream that fails its first two attempts: it reads which one it
/// // serves from the request.
/// let upstream = service_fn(|req: http::Request<ReplayBody<String>>| async move {
///     let attempt = Attempts::of(req.extensions()).get();
///     let status = if attempt < 3 { 503 } else { 200 };
///     let res = http::Response::builder().status(status).body(String::new())?;
///     Ok::<_, tower_http_resilience::BoxError>(res)
/// });
/// let layer = RetryLayer::new().backoff(Backoff::constant(Duration::from_millis(10)));
/// let res = layer.layer(upstream).oneshot(http::Request::new(String::new())).await.unwrap();
/// let attempts = Attempts::of(res.extensions());
/// assert_eq!((attempts.get(), attempts.retries()), (3, 2));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempts(pub(crate) u32);

impl Attempts {
    /// The attempts recorded in `extensions` (of a response or an error),
    /// or the attempts sent so far (of a request inside the retry layer);
    /// one when neither is there.
    pub fn of(extensions: &http::Extensions) -> Attempts {
        if let Some(attempts) = extensions.get::<Attempts>() {
            return *attempts;
        }
        let sent = CallContext::get(extensions).map_or(0, CallContext::attempts);
        Attempts(sent.max(1))
    }

    /// The number of attempts, at least 1.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The number of retries: attempts after the first.
    pub const fn retries(self) -> u32 {
        self.0.saturating_sub(1)
    }

    /// Records the attempts in the outcome handed back: always on an error,
    /// on a response only when it took more than one attempt (inserting
    /// into empty extensions costs three allocations, on every call).
    pub(crate) fn record<T>(
        self,
        outcome: Result<Response<T>, ApiError>,
    ) -> Result<Response<T>, ApiError> {
        match outcome {
            Ok(mut res) => {
                if self.0 > 1 {
                    res.extensions_mut().insert(self);
                }
                Ok(res)
            }
            Err(mut err) => {
                err.extensions_mut().insert(self);
                Err(err)
            }
        }
    }
}
