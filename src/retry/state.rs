//! [`State`]: where the attempt loop's future is.

use std::time::Duration;

use http::response;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::decide::Last;
use super::hold::Hold;
use super::replay::ReplayBody;
use crate::body::Peek;
use crate::ApiError;

pin_project! {
    #[project = StateProj]
    pub(super) enum State<F, ResBody: Body, Req> {
        // An attempt is in flight; a stream's first-byte clock (its
        // length) runs out at `by`.
        Called { #[pin] future: F, by: Option<(Instant, Duration)> },
        // The policy or the table asked for the start of an error body.
        Peeking { head: Option<response::Parts>, peek: Peek<ResBody> },
        // A stream's start is held back until its commit point, or until
        // its first-byte clock runs out at `by`.
        Holding {
            head: Option<response::Parts>,
            hold: Hold<ResBody>,
            by: Option<(Instant, Duration)>,
        },
        // Waiting before the next attempt, the last outcome kept until the
        // next attempt is sure to go out.
        Waiting { last: Option<Last<ResBody>> },
        // Waiting for the inner service to be ready for the next attempt.
        Ready { last: Option<Last<ResBody>> },
        // Reading the caller's body whole before a target that renames the
        // model (rare: boxed, to keep the state small).
        Reading { body: Box<ReplayBody<Req>>, last: Option<Last<ResBody>> },
        // The call is answered without an attempt (no target can serve
        // it, or its path is refused).
        Refused { error: Option<ApiError> },
        Done,
    }
}
