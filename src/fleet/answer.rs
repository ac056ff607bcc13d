//! The future of a mirror call that may ask the store: ready at once when the
//! mirror knows the answer, else one boxed request under a tight timeout.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::backend::BoxFuture;

/// The answer to [`FleetMirror::acquire`](super::FleetMirror::acquire) or
/// [`FleetMirror::probe`](super::FleetMirror::probe): ready without waiting
/// when the mirror knows it; else it asks the store once, within the lease
/// timeout.
///
/// ```
/// use tower_http_resilience::fleet::{FleetMirror, MemoryStore, Permit, Rate};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mirror = FleetMirror::builder("docs").memory(&MemoryStore::new()).unwrap();
/// let permit: Permit = mirror.acquire("sk-key-1", Rate::per_minute(60)).await;
/// # let _ = permit;
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Answer<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Ready(Option<T>),
    Asking(BoxFuture<'static, T>),
}

impl<T> Answer<T> {
    pub(crate) fn ready(value: T) -> Answer<T> {
        Answer {
            inner: Inner::Ready(Some(value)),
        }
    }

    pub(crate) fn asking(fut: BoxFuture<'static, T>) -> Answer<T> {
        Answer {
            inner: Inner::Asking(fut),
        }
    }

    /// The answer if the mirror knew it without asking, else the question.
    #[cfg_attr(not(feature = "pacing"), allow(dead_code))]
    pub(crate) fn known(self) -> Result<T, Answer<T>> {
        match self.inner {
            Inner::Ready(Some(value)) => Ok(value),
            inner => Err(Answer { inner }),
        }
    }
}

impl<T> fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner {
            Inner::Ready(_) => "ready",
            Inner::Asking(_) => "asking",
        };
        f.debug_struct("Answer").field("state", &state).finish()
    }
}

impl<T: Unpin> Future for Answer<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().inner {
            Inner::Ready(value) => {
                Poll::Ready(value.take().expect("Answer polled after completion"))
            }
            Inner::Asking(fut) => fut.as_mut().poll(cx),
        }
    }
}
