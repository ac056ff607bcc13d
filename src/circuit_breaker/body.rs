use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::breaker::{Guard, Outcome};
use super::{Classify, DefaultClassifier, Observation, Verdict};

pin_project! {
    /// A response body that tells its breaker how the call ended.
    ///
    /// The outcome is recorded when the body ends: a success, unless the
    /// trailers carry a failing status (gRPC) or the body fails while
    /// being read (a failure). A body dropped before its end is not
    /// recorded at all. Frames, `is_end_stream` and `size_hint` pass
    /// through unchanged.
    pub struct CircuitBreakerBody<B, C = DefaultClassifier> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
        classifier: C,
    }
}

impl<B, C> CircuitBreakerBody<B, C> {
    pub(crate) fn new(inner: B, guard: Option<Guard>, classifier: C) -> Self {
        CircuitBreakerBody {
            inner,
            guard,
            classifier,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body. Its outcome is no longer recorded.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug, C> fmt::Debug for CircuitBreakerBody<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBody")
            .field("inner", &self.inner)
            .field("recording", &self.guard.is_some())
            .finish()
    }
}

impl<B, C> Body for CircuitBreakerBody<B, C>
where
    B: Body,
    C: Classify,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.guard.is_some() {
            let outcome = match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => {
                        match this.classifier.classify(Observation::Trailers(trailers)) {
                            Verdict::Success => Some(Outcome::Success),
                            Verdict::Failure => Some(Outcome::Failure),
                            Verdict::Ignore => Some(Outcome::Ignore),
                        }
                    }
                    None if this.inner.is_end_stream() => Some(Outcome::Success),
                    None => None,
                },
                Some(Err(_)) => Some(Outcome::Failure),
                None => Some(Outcome::Success),
            };
            if let Some(outcome) = outcome {
                if let Some(guard) = this.guard.take() {
                    guard.finish(outcome);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
