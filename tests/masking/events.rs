//! Error events inside a successful event stream, in process: split across
//! frames anywhere, left alone without credentials, bounded when an event
//! never ends.

use crate::*;

use std::time::Duration;

use http_body::Body as _;
use tokio_stream::wrappers::ReceiverStream;

/// A stream of data events, then an error event with `secret` in it.
fn stream_text(secret: &str) -> (String, String) {
    let error = |key: &str| {
        format!(
            "event: error\ndata: {}\n\n",
            envelope(&format!("Incorrect API key provided: {key}"))
        )
    };
    let text = format!("{DATA_EVENTS}{}data: [DONE]\n\n", error(secret));
    let want = format!("{DATA_EVENTS}{}data: [DONE]\n\n", error(REDACTED));
    (text, want)
}

/// A service that answers with `frames` as a 200 event stream.
fn streaming(
    frames: Vec<Bytes>,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = BoxError>>,
    Error = Infallible,
> + Clone {
    let svc = tower::service_fn(move |_req: Request<Body>| {
        let frames = frames.clone();
        async move {
            let frames = frames
                .into_iter()
                .map(|f| Ok::<_, Infallible>(Frame::data(f)));
            Ok::<_, Infallible>(
                Response::builder()
                    .header(CONTENT_TYPE, "text/event-stream")
                    .body(StreamBody::new(futures_util::stream::iter(frames)))
                    .unwrap(),
            )
        }
    });
    ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service(svc)
}

fn with_key(key: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/v1/chat/completions");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn an_error_event_split_anywhere_is_masked() {
    let (name, secret) = CREDENTIALS[1];
    assert_eq!(name, "x-api-key");
    let (text, want) = stream_text(secret);
    let bytes = Bytes::from(text);
    for cut in 0..=bytes.len() {
        let frames = vec![bytes.slice(..cut), bytes.slice(cut..)];
        let res = streaming(frames)
            .oneshot(with_key(Some(secret)))
            .await
            .unwrap();
        assert!(!res.headers().contains_key("content-length"));
        let out = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(std::str::from_utf8(&out).unwrap(), want, "cut at {cut}");
    }
}

#[tokio::test]
async fn without_credentials_the_stream_is_not_read() {
    // Key shapes stay too: a call without secrets passes its body as it
    // comes, frame for frame.
    let (text, _) = stream_text("sk-proj-Q1w2E3r4T5y6U7i8O9p0");
    let frames: Vec<Bytes> = text
        .as_bytes()
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect();
    let res = streaming(frames.clone())
        .oneshot(with_key(None))
        .await
        .unwrap();
    let mut body = std::pin::pin!(res.into_body());
    for want in &frames {
        let got = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(got.as_ptr(), want.as_ptr(), "the upstream's own bytes");
    }
    assert!(body.frame().await.is_none());

    // With a credential, the size of the stream is no longer known.
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(CONTENT_TYPE, "text/event-stream")
                    .header("content-length", "12")
                    .body(Full::new(Bytes::from_static(b"data: {}\n\n\n\n")))
                    .unwrap(),
            )
        });
    let res = svc.clone().oneshot(with_key(None)).await.unwrap();
    assert_eq!(res.headers()["content-length"], "12");
    assert_eq!(res.body().size_hint().exact(), Some(12));
    let res = svc.oneshot(with_key(Some(CREDENTIALS[2].1))).await.unwrap();
    assert!(!res.headers().contains_key("content-length"));
    assert_eq!(res.body().size_hint().exact(), None);
    let out = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&out[..], b"data: {}\n\n\n\n");
}

#[tokio::test(start_paused = true)]
async fn an_event_that_never_ends_is_not_held() {
    let (name, secret) = CREDENTIALS[2];
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(128);
    let rx = std::sync::Mutex::new(Some(rx));
    let svc = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service_fn(move |_req: Request<Body>| {
            let rx = rx.lock().unwrap().take().unwrap();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(CONTENT_TYPE, "text/event-stream")
                        .body(StreamBody::new(ReceiverStream::new(rx)))
                        .unwrap(),
                )
            }
        });
    let req = Request::get("/")
        .header(name, secret)
        .body(Body::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let mut body = std::pin::pin!(res.into_body());
    // 1 MiB of one event without a line end, 16 KiB a frame: what went in
    // comes out while the stream is still open, bar at most 64 KiB.
    let piece = Bytes::from(vec![b'x'; 16 * 1024]);
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: {\"error\":\""))))
        .await
        .unwrap();
    let (mut sent, mut received) = (16, 0);
    for _ in 0..64 {
        tx.send(Ok(Frame::data(piece.clone()))).await.unwrap();
        sent += piece.len();
        while received + 64 * 1024 < sent {
            // A body that held it all would never answer.
            let frame = tokio::time::timeout(Duration::from_secs(1), body.frame())
                .await
                .expect("the held bytes stay under 64 KiB");
            received += frame.unwrap().unwrap().into_data().unwrap().len();
        }
    }
    drop(tx);
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().unwrap().len();
    }
    assert_eq!(received, sent, "every byte passes, none is added");
}
