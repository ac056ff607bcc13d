//! [`FirstEvent`]: reads the start of a server-sent event stream until its
//! first event that carries data, and tells whether that event is an error.

use crate::json::is_error_envelope;

/// The first complete SSE event with a `data` field, fed piece by piece.
///
/// Lines end at `\n`, `\r` or `\r\n` (a pair may be split across pieces);
/// an empty line ends an event; comment lines (`:`) and the `event`, `id`
/// and `retry` fields are skipped; the `data` lines of an event are joined
/// with `\n`, as a client would see them. The caller bounds what it feeds.
#[derive(Debug, Default)]
pub(crate) struct FirstEvent {
    /// The line being read.
    line: Vec<u8>,
    /// The previous piece ended with `\r`: a `\n` opening this one belongs
    /// to it.
    after_cr: bool,
    /// The data of the event being read, once it has a `data` field.
    data: Option<Vec<u8>>,
}

/// What the start of a stream showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// No complete event with data yet.
    Nothing,
    /// The first event with data is complete.
    Data,
    /// The first event with data is an error envelope (`{"error": …}`).
    Error,
}

impl FirstEvent {
    /// Reads `piece`; says what the stream showed once its first event
    /// with data is complete (the rest of the piece is not looked at).
    pub(crate) fn feed(&mut self, piece: &[u8]) -> Seen {
        let mut rest = piece;
        if std::mem::take(&mut self.after_cr) && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let crlf = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if crlf {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let seen = self.end_line();
            if seen != Seen::Nothing {
                return seen;
            }
        }
        self.line.extend_from_slice(rest);
        Seen::Nothing
    }

    /// The data of the first event, once [`feed`](Self::feed) said it is an
    /// error.
    pub(crate) fn take_error(&mut self) -> Vec<u8> {
        self.data.take().unwrap_or_default()
    }

    /// A line is complete: an empty line ends the event.
    fn end_line(&mut self) -> Seen {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return match self.data.take() {
                Some(data) if is_error_envelope(&data) => {
                    self.data = Some(data);
                    Seen::Error
                }
                Some(_) => Seen::Data,
                None => Seen::Nothing,
            };
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return Seen::Nothing, // a comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        if field == b"data" {
            // A `data` field with an empty value still makes an event.
            let data = self.data.get_or_insert_with(Vec::new);
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
        }
        Seen::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pieces: &[&str]) -> Vec<Seen> {
        let mut f = FirstEvent::default();
        pieces.iter().map(|p| f.feed(p.as_bytes())).collect()
    }

    #[test]
    fn the_first_event_with_data() {
        assert_eq!(seen(&["data: {}\n\n"]), [Seen::Data]);
        assert_eq!(
            seen(&[": keep-alive\n\n", "event: ping\n\n", "data: x\n", "\n"]),
            [Seen::Nothing, Seen::Nothing, Seen::Nothing, Seen::Data]
        );
        // Split anywhere, any line end.
        assert_eq!(
            seen(&["da", "ta: {\"choices\"", ":[]}\r", "\n", "\r"]),
            [
                Seen::Nothing,
                Seen::Nothing,
                Seen::Nothing,
                Seen::Nothing,
                Seen::Data
            ]
        );
        assert_eq!(seen(&["data:\r\r"]), [Seen::Data]);
        assert_eq!(seen(&["id: 1\nretry: 10\n\n"]), [Seen::Nothing]);
    }

    #[test]
    fn error_events() {
        assert_eq!(
            seen(&["data: {\"error\":{\"message\":\"overloaded\"}}\n\n"]),
            [Seen::Error]
        );
        assert_eq!(
            seen(&["event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"]),
            [Seen::Error]
        );
        // Over two data lines.
        assert_eq!(seen(&["data: {\"error\":\ndata: {}}\n\n"]), [Seen::Error]);
        // An error mentioned inside the data is not an error event.
        assert_eq!(
            seen(&["data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n"]),
            [Seen::Data]
        );
        assert_eq!(seen(&["data: [DONE]\n\n"]), [Seen::Data]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(pieces in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
            let mut f = FirstEvent::default();
            for p in pieces {
                let _ = f.feed(&p);
            }
        }

        /// However a stream is cut into pieces, the first event is seen
        /// when its blank line arrives.
        #[test]
        fn any_split(cut in proptest::collection::vec(0usize..40, 0..6)) {
            let text = b": hi\r\nevent: x\r\ndata: {\"a\":1}\r\n\r\ndata: 2\n\n";
            let mut cuts: Vec<usize> = cut.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort_unstable();
            let mut f = FirstEvent::default();
            let mut at = 0;
            let mut first = None;
            for c in cuts.into_iter().chain([text.len()]) {
                if first.is_none() && f.feed(&text[at..c]) == Seen::Data {
                    first = Some(c);
                }
                at = c;
            }
            proptest::prop_assert!(first.is_some_and(|c| c >= 32));
        }
    }
}
