//! The layer end to end, on tokio's paused clock.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::{CollectBodyLayer, CollectedBody};
use crate::deadline::Deadline;
use crate::{ApiError, BoxError};

type Tx = mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>;

/// A request body fed by the test, announcing whatever size it is told to.
struct Fed {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>,
    hint: SizeHint,
}

impl Body for Fed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn fed(announced: Option<u64>) -> (Tx, Fed) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hint = announced.map_or_else(SizeHint::new, SizeHint::with_exact);
    (tx, Fed { rx, hint })
}

fn chunk(n: usize) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from(vec![b'x'; n])))
}

/// The inner service: keeps every body it is given until the test lets go.
#[derive(Clone, Default)]
struct Keeper(Arc<Mutex<Vec<CollectedBody>>>);

impl Keeper {
    fn service(
        &self,
    ) -> impl tower::Service<
        Request<CollectedBody>,
        Response = Response<usize>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        let kept = self.0.clone();
        tower::service_fn(move |req: Request<CollectedBody>| {
            let kept = kept.clone();
            async move {
                let len = req.body().bytes().len();
                kept.lock().unwrap().push(req.into_body());
                Ok(Response::new(len))
            }
        })
    }

    fn take(&self) -> Vec<CollectedBody> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn layer() -> CollectBodyLayer {
    CollectBodyLayer::new()
        .max_request_body(1000)
        .max_buffered_bodies(1500)
        .timeout(Duration::from_secs(60))
}

async fn call<B>(layer: &CollectBodyLayer, keeper: &Keeper, body: B) -> Result<usize, ApiError>
where
    B: Body + Send + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    let service = layer.layer(keeper.service());
    let res = service.oneshot(Request::new(body)).await?;
    Ok(res.into_body())
}

#[tokio::test(start_paused = true)]
async fn hands_on_the_whole_body_with_its_trailers() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(None);
    for n in [3, 4, 5] {
        tx.send(chunk(n)).unwrap();
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", "12".parse().unwrap());
    tx.send(Ok(Frame::trailers(trailers.clone()))).unwrap();
    drop(tx);

    assert_eq!(call(&layer, &keeper, body).await.unwrap(), 12);
    let kept = keeper.take();
    assert_eq!(kept[0].size_hint().exact(), Some(12));
    assert_eq!(kept[0].trailers(), Some(&trailers));
    assert_eq!(layer.buffered_bodies(), 12, "held while the bytes live");
    drop(kept);
    assert_eq!(layer.buffered_bodies(), 0, "given back with the memory");
}

#[tokio::test(start_paused = true)]
async fn an_announced_size_over_the_limit_is_refused_unread() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(Some(1 << 30));
    tx.send(chunk(10)).unwrap();
    let err = call(&layer, &keeper, body).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (413, "request_too_large")
    );
    assert_eq!(err.message(), "the request body is larger than 1000 bytes");
    assert!(keeper.take().is_empty());
    assert_eq!(layer.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_growing_past_the_limit_is_refused_when_it_does() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(None);
    for _ in 0..3 {
        tx.send(chunk(400)).unwrap();
    }
    let err = call(&layer, &keeper, body).await.unwrap_err();
    assert_eq!(err.status(), 413);
    assert_eq!(layer.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_ends_is_answered_408_at_the_deadline() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(None);
    tx.send(chunk(10)).unwrap();
    let started = Instant::now();
    let err = call(&layer, &keeper, body).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!(
        (err.status().as_u16(), err.error_type()),
        (408, "timeout_error")
    );
    assert_eq!(err.message(), "the request body was not complete within 1m");
    assert_eq!(layer.buffered_bodies(), 0);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_length_that_promises_more_than_is_sent_is_answered_408() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(Some(900));
    tx.send(chunk(10)).unwrap();
    let task = tokio::spawn({
        let layer = layer.clone();
        async move { call(&layer, &keeper, body).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(layer.buffered_bodies(), 900, "holds what it announced");
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.status(), 408);
    assert_eq!(layer.buffered_bodies(), 0);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_in_the_request_wins() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (_tx, body) = fed(None);
    let mut req = Request::new(body);
    Deadline::after(Duration::from_secs(5)).set_earliest(req.extensions_mut());
    let started = Instant::now();
    let err = layer
        .layer(keeper.service())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(err.message(), "the request body was not complete within 5s");
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_for_room_then_gets_503_past_its_deadline() {
    let (layer, keeper) = (layer(), Keeper::default());
    // The first body is in and kept by the service: 900 of 1500 held.
    let first = Full::new(Bytes::from(vec![b'a'; 900]));
    assert_eq!(call(&layer, &keeper, first).await.unwrap(), 900);
    assert_eq!(layer.buffered_bodies(), 900);

    // The second announces 800: it waits for room.
    let second = tokio::spawn({
        let (layer, keeper) = (layer.clone(), keeper.clone());
        async move {
            let body = Full::new(Bytes::from(vec![b'b'; 800]));
            call(&layer, &keeper, body).await
        }
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!second.is_finished());
    // The first call's memory is freed: the second goes on.
    drop(keeper.take());
    assert_eq!(second.await.unwrap().unwrap(), 800);
    assert_eq!(layer.buffered_bodies(), 800);

    // A third finds no room in time.
    let started = Instant::now();
    let third = Full::new(Bytes::from(vec![b'c'; 800]));
    let err = call(&layer, &keeper, third).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!((err.status().as_u16(), err.code()), (503, "overloaded"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    drop(keeper.take());
    assert_eq!(layer.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_of_unknown_size_holds_the_limit_while_read() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(None);
    let task = tokio::spawn({
        let (layer, keeper) = (layer.clone(), keeper.clone());
        async move { call(&layer, &keeper, body).await }
    });
    tx.send(chunk(100)).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(layer.buffered_bodies(), 1000);
    drop(tx);
    assert_eq!(task.await.unwrap().unwrap(), 100);
    assert_eq!(layer.buffered_bodies(), 100);
    drop(keeper.take());
    assert_eq!(layer.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_breaks_off_is_answered_400() {
    let (layer, keeper) = (layer(), Keeper::default());
    let (tx, body) = fed(None);
    tx.send(chunk(10)).unwrap();
    tx.send(Err("connection reset".into())).unwrap();
    let err = call(&layer, &keeper, body).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.error_type()),
        (400, "invalid_request_error")
    );
    assert_eq!(layer.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_holds_nothing() {
    let (layer, keeper) = (layer(), Keeper::default());
    let body = http_body_util::Empty::<Bytes>::new();
    assert_eq!(call(&layer, &keeper, body).await.unwrap(), 0);
    assert_eq!(layer.buffered_bodies(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_limit_is_never_above_the_budget() {
    let layer = CollectBodyLayer::new()
        .max_request_body(1 << 20)
        .max_buffered_bodies(100);
    let body = Full::new(Bytes::from(vec![0u8; 101]));
    let err = call(&layer, &Keeper::default(), body).await.unwrap_err();
    assert_eq!(err.status(), 413, "could never be admitted");
}
