//! [`Hold`]: the start of a streaming response, held back until the stream
//! reaches its commit point.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Body;

use super::sse::{FirstEvent, Seen};
use crate::body::{Gathered, PeekEnd, Peeked, PeekedBody};

/// The most held back of a stream before its commit point: a stream that
/// shows no event within 64 KiB is handed on as it is.
pub(crate) const HOLD_LIMIT: usize = 64 * 1024;

/// Reads the start of a streaming response until its commit point: the
/// first complete SSE event with data (an event stream), or the first body
/// byte (another stream). What was read is kept and handed on first.
pub(crate) struct Hold<B> {
    body: Option<Pin<Box<B>>>,
    gathered: Gathered,
    /// `None`: the first byte commits (boxed: the state of the loop's
    /// future stays small).
    events: Option<Box<FirstEvent>>,
}

/// How the start of a stream ended.
pub(crate) enum Held<B: Body> {
    /// The commit point was reached (or the held-back limit): the body,
    /// whole, for the caller.
    Committed(PeekedBody<B>),
    /// The first event is an error envelope: its data.
    ErrorEvent(Bytes),
    /// The stream ended (or sent trailers) before its first event.
    Ended,
    /// The stream failed before its first event.
    Failed(B::Error),
}

impl<B: Body> Hold<B> {
    /// Holds `body` back; `events`: it is an event stream.
    pub(crate) fn new(body: B, events: bool) -> Self {
        Hold {
            body: Some(Box::pin(body)),
            gathered: Gathered::default(),
            events: events.then(Box::default),
        }
    }

    /// Reads on until the stream commits, ends or fails.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Held<B>>
    where
        B::Data: Into<Bytes>,
    {
        loop {
            let body = self.body.as_mut().expect("a hold is polled until it ends");
            let frame = match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Held::Ended),
                Some(Err(e)) => return Poll::Ready(Held::Failed(e)),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                // Trailers before any data end the stream.
                return Poll::Ready(Held::Ended);
            };
            let chunk: Bytes = data.into();
            if chunk.is_empty() {
                continue;
            }
            let seen = match &mut self.events {
                Some(events) => events.feed(&chunk),
                None => Seen::Data,
            };
            self.gathered.push(chunk);
            match (seen, &mut self.events) {
                (Seen::Error, Some(events)) => {
                    return Poll::Ready(Held::ErrorEvent(events.take_error().into()));
                }
                (Seen::Nothing, _) if self.gathered.len() < HOLD_LIMIT => {}
                _ => return Poll::Ready(Held::Committed(self.commit())),
            }
        }
    }

    /// The body for the caller: what was held back, then the rest.
    fn commit(&mut self) -> PeekedBody<B> {
        let end = match self.body.take() {
            Some(body) => PeekEnd::More(body),
            None => PeekEnd::Finished(None),
        };
        Peeked {
            data: self.gathered.take(),
            end,
        }
        .into_body()
    }
}

impl<B> fmt::Debug for Hold<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("held", &self.gathered.len())
            .field("events", &self.events.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    fn body(
        parts: Vec<Result<Frame<Bytes>, &'static str>>,
    ) -> impl Body<Data = Bytes, Error = &'static str> {
        StreamBody::new(futures_util::stream::iter(parts))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, &'static str> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    async fn hold<B: Body + Unpin>(b: B, events: bool) -> Held<B>
    where
        B::Data: Into<Bytes>,
    {
        let mut h = Hold::new(b, events);
        std::future::poll_fn(|cx| h.poll(cx)).await
    }

    #[tokio::test]
    async fn the_first_event_commits_and_nothing_is_lost() {
        let held = hold(
            body(vec![
                data(": ping\n\n"),
                data("data: {\"a\""),
                data(":1}\n\n"),
                data("data: 2\n\n"),
            ]),
            true,
        )
        .await;
        let Held::Committed(b) = held else {
            panic!("committed")
        };
        let all = b.collect().await.unwrap().to_bytes();
        assert_eq!(all, ": ping\n\ndata: {\"a\":1}\n\ndata: 2\n\n");
    }

    #[tokio::test]
    async fn what_fails_before_the_first_event() {
        assert!(matches!(
            hold(body(vec![data(": x\n\n")]), true).await,
            Held::Ended
        ));
        assert!(matches!(
            hold(body(vec![data("data: {\"error\":{}}\n\n")]), true).await,
            Held::ErrorEvent(b) if b == "{\"error\":{}}"
        ));
        assert!(matches!(
            hold(body(vec![data("data: x\n"), Err("reset")]), true).await,
            Held::Failed("reset")
        ));
        let t: Vec<Result<Frame<Bytes>, &'static str>> =
            vec![Ok(Frame::trailers(http::HeaderMap::new()))];
        assert!(matches!(hold(body(t), false).await, Held::Ended));
    }

    #[tokio::test]
    async fn another_stream_commits_at_its_first_byte_and_a_silent_one_at_the_limit() {
        let Held::Committed(b) = hold(body(vec![data(""), data("{"), data("}")]), false).await
        else {
            panic!("committed")
        };
        assert_eq!(b.collect().await.unwrap().to_bytes(), "{}");
        let comments = vec![Ok::<_, Infallible>(Frame::data(Bytes::from(
            vec![b':'; HOLD_LIMIT],
        )))];
        let Held::Committed(_) =
            hold(StreamBody::new(futures_util::stream::iter(comments)), true).await
        else {
            panic!("committed at the limit")
        };
    }
}
