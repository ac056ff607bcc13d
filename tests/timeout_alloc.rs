//! The hot path allocates nothing: an ordinary call through `TimeoutLayer`
//! (deadline publishing off), and every frame of a streaming body whose
//! timer is armed and re-armed.
//!
//! A counting global allocator (this test binary only) counts the
//! allocations made on the test's thread between two points.

#![cfg(feature = "timeout")]

mod counting_alloc;

use counting_alloc::allocations;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service, ServiceExt};
use tower_http_resilience::timeout::RequestBody;
use tower_http_resilience::TimeoutLayer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

async fn drain<B: Body>(body: B)
where
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
}

#[test]
fn an_ordinary_call_allocates_nothing() {
    runtime().block_on(async {
        let inner = tower::service_fn(|_req: Request<RequestBody<Empty<Bytes>>>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
                Bytes::from_static(b"{\"ok\":true}"),
            ))))
        });
        let mut svc = TimeoutLayer::new().publish_deadline(false).layer(inner);
        async fn call<S, B>(svc: &mut S)
        where
            S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
            S::Error: std::fmt::Debug,
            B: Body,
            B::Error: std::fmt::Debug,
        {
            let res = svc
                .ready()
                .await
                .unwrap()
                .call(Request::new(Empty::new()))
                .await
                .unwrap();
            drain(res.into_body()).await;
        }
        call(&mut svc).await;
        let before = allocations();
        for _ in 0..1000 {
            call(&mut svc).await;
        }
        assert_eq!(
            allocations() - before,
            0,
            "allocations in 1000 ordinary calls"
        );
    });
}

/// An event stream of `left` frames that is not ready every other poll, so
/// the body clocks arm their timer and see activity on every frame.
struct Stuttering {
    left: usize,
    ready: bool,
}

impl Body for Stuttering {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let ready = self.ready;
        self.ready = !ready;
        if !ready {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            b"data: {\"n\":1}\n\n",
        )))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[test]
fn a_streaming_body_allocates_nothing_per_frame() {
    runtime().block_on(async {
        let inner = tower::service_fn(|_req: Request<RequestBody<Empty<Bytes>>>| async {
            let res = Response::builder()
                .header("content-type", "text/event-stream")
                .body(Stuttering {
                    left: 10_000,
                    ready: false,
                })
                .unwrap();
            Ok::<_, Infallible>(res)
        });
        // Comment lines are scanned too (the costlier setting).
        let layer = TimeoutLayer::new().sse_comments_are_activity(false);
        let res = layer
            .layer(inner)
            .oneshot(Request::new(Empty::new()))
            .await
            .unwrap();
        drain(res.into_body()).await;

        let res = layer
            .layer(inner)
            .oneshot(Request::new(Empty::new()))
            .await
            .unwrap();
        let before = allocations();
        drain(res.into_body()).await;
        assert_eq!(allocations() - before, 0, "allocations over 10 000 frames");
    });
}
