//! [`ErrorEvents`]: the error events of a Server-Sent-Events stream that
//! succeeded, without the call's credentials; every other event passes
//! byte for byte.
//!
//! An upstream that answered 200 may still write an error event late in the
//! stream (`data: {"error":{"message":"Incorrect API key provided: …"}}`),
//! echoing what it was sent. Such an event loses the call's secrets and the
//! shapes of keys, the way an error body does (its JSON stays valid); data
//! events are the success body and are not touched.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::secrets::Secrets;
use crate::error::redact::redact_body;
use crate::json::is_error_envelope;

/// The most bytes of an unfinished event held back while its end is
/// awaited. Past it, the event's bytes pass as they are.
pub(crate) const CARRY_CAP: usize = 64 * 1024;

/// Reads the events of a stream frame by frame and masks its error events.
///
/// Lines end at `\n`, `\r` or `\r\n` (a pair may be split across frames); an
/// empty line ends an event. A frame's complete events are looked at in
/// place; only the start of an event whose end has not arrived is held
/// back (up to [`CARRY_CAP`] bytes), so a frame that ends on an event's end
/// and holds no error event passes without a copy.
#[derive(Debug, Default)]
pub(crate) struct ErrorEvents {
    /// The start of an event whose end has not arrived.
    carry: BytesMut,
    /// The last byte read ended a line: one more line end ends the event.
    line_ended: bool,
    /// The last byte read was `\r`: a `\n` next belongs to it.
    after_cr: bool,
    /// The event being read outgrew [`CARRY_CAP`]: its bytes pass as they
    /// are until it ends.
    overflow: bool,
    /// Trailers that arrived while an event was held: they go out after it.
    trailers: Option<HeaderMap>,
}

impl ErrorEvents {
    /// `data` with its error events masked; the start of an event whose end
    /// is not in `data` is held back (and the start held from earlier frames
    /// goes out with the event's end). The result may be empty.
    pub(crate) fn feed(&mut self, data: Bytes, secrets: &Secrets) -> Bytes {
        let mut out = Out::new(&data);
        // Where the event being read starts in `data`.
        let mut start = 0;
        // The first byte not looked at yet.
        let mut at = 0;
        while let Some(i) = data[at..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let i = at + i;
            let content = i > at;
            at = i + 1;
            let lf_of_crlf = !content && self.after_cr && data[i] == b'\n';
            self.after_cr = data[i] == b'\r';
            if lf_of_crlf {
                // The end of the line that ended the last event goes out
                // with it, rather than start the next one.
                if start == i && self.carry.is_empty() {
                    start = at;
                }
                continue;
            }
            if content || !self.line_ended {
                self.line_ended = true;
                continue;
            }
            self.end_event(&mut out, start..at, secrets);
            start = at;
        }
        if at < data.len() {
            self.line_ended = false;
            self.after_cr = false;
        }
        self.hold_rest(out, start)
    }

    /// The bytes still held when the stream ends: an event without its
    /// closing empty line, masked when it is an error event.
    pub(crate) fn finish(&mut self, secrets: &Secrets) -> Option<Bytes> {
        if self.carry.is_empty() {
            return None;
        }
        let held = self.carry.split().freeze();
        Some(mask(&held, secrets).unwrap_or(held))
    }

    /// Drops the held start of an event the upstream never finished (the
    /// stream failed): the event that reports the failure then reads on its
    /// own.
    pub(crate) fn discard(&mut self) {
        self.carry = BytesMut::new();
    }

    /// Whether bytes are held back.
    pub(crate) fn holds(&self) -> bool {
        !self.carry.is_empty()
    }

    /// Whether nothing waits to go out: no bytes, no trailers.
    pub(crate) fn is_idle(&self) -> bool {
        self.carry.is_empty() && self.trailers.is_none()
    }

    /// Keeps `trailers` to go out after the held bytes.
    pub(crate) fn hold_trailers(&mut self, trailers: HeaderMap) {
        self.trailers = Some(trailers);
    }

    /// The trailers kept by [`hold_trailers`](Self::hold_trailers).
    pub(crate) fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// The event at `range` of the frame (after what is held, if anything)
    /// has ended.
    fn end_event(&mut self, out: &mut Out<'_>, range: Range<usize>, secrets: &Secrets) {
        if std::mem::take(&mut self.overflow) {
            return;
        }
        if !self.carry.is_empty() {
            self.carry.extend_from_slice(&out.data[range.clone()]);
            let event = self.carry.split().freeze();
            let event = mask(&event, secrets).unwrap_or(event);
            out.replace(range, &event);
        } else if let Some(masked) = mask(&out.data[range.clone()], secrets) {
            out.replace(range, &masked);
        }
    }

    /// Holds back the unfinished event at `start..` of the frame, unless it
    /// would make the held bytes outgrow [`CARRY_CAP`]: then they pass.
    fn hold_rest(&mut self, mut out: Out<'_>, start: usize) -> Bytes {
        let len = out.data.len();
        if self.overflow || start == len {
            return out.finish(len);
        }
        if self.carry.len() + (len - start) > CARRY_CAP {
            self.overflow = true;
            if !self.carry.is_empty() {
                // What is held starts the frame's first event (`start` is 0).
                let held = self.carry.split().freeze();
                out.replace(start..start, &held);
            }
            return out.finish(len);
        }
        self.carry.extend_from_slice(&out.data[start..]);
        out.finish(start)
    }
}

/// What goes out of one frame: the frame itself (sliced, not copied) until
/// an event in it changes, then a copy with the changes.
struct Out<'a> {
    data: &'a Bytes,
    copy: Option<BytesMut>,
    /// `data[..copied]` is in `copy` (or, without a copy, unchanged).
    copied: usize,
}

impl<'a> Out<'a> {
    fn new(data: &'a Bytes) -> Self {
        Out {
            data,
            copy: None,
            copied: 0,
        }
    }

    /// `data[range]` goes out as `with`.
    fn replace(&mut self, range: Range<usize>, with: &[u8]) {
        let copy = self
            .copy
            .get_or_insert_with(|| BytesMut::with_capacity(self.data.len() + with.len()));
        copy.extend_from_slice(&self.data[self.copied..range.start]);
        copy.extend_from_slice(with);
        self.copied = range.end;
    }

    /// What goes out: the frame up to `end`, with the changes.
    fn finish(self, end: usize) -> Bytes {
        match self.copy {
            None => self.data.slice(..end),
            Some(mut copy) => {
                copy.extend_from_slice(&self.data[self.copied..end]);
                copy.freeze()
            }
        }
    }
}

/// `event` without the call's secrets and key shapes when it is an error
/// event; `None` when it is not one, or holds nothing to remove. The value
/// of each `data` line is masked as an error body is (a JSON value stays
/// valid); other lines as text.
fn mask(event: &[u8], secrets: &Secrets) -> Option<Bytes> {
    if !may_be_an_error(event) || !is_error_event(event) {
        return None;
    }
    let mut out = Vec::with_capacity(event.len() + 32);
    let mut changed = false;
    for (line, end) in lines(event) {
        let line = &event[line];
        let (field, value) = match line.strip_prefix(b"data:") {
            Some(value) => {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                line.split_at(line.len() - value.len())
            }
            None => (&[][..], line),
        };
        out.extend_from_slice(field);
        match redact_body(value, secrets, true) {
            Some(clean) => {
                changed = true;
                out.extend_from_slice(&clean);
            }
            None => out.extend_from_slice(value),
        }
        out.extend_from_slice(&event[end]);
    }
    changed.then(|| Bytes::from(out))
}

/// Whether `event` may be an error event at all: its bytes hold `error`,
/// or an escape that could spell it. Most events are data: a scan of their
/// bytes, not of their JSON.
fn may_be_an_error(event: &[u8]) -> bool {
    event.contains(&b'\\') || event.windows(5).any(|w| w == b"error")
}

/// Whether the data of `event` (its `data` lines joined with `\n`, as a
/// client reads them) is an error envelope.
fn is_error_event(event: &[u8]) -> bool {
    let mut values = lines(event).filter_map(|(line, _)| data_value(&event[line]));
    let Some(first) = values.next() else {
        return false;
    };
    let Some(second) = values.next() else {
        return is_error_envelope(first);
    };
    let mut joined = first.to_vec();
    for value in std::iter::once(second).chain(values) {
        joined.push(b'\n');
        joined.extend_from_slice(value);
    }
    is_error_envelope(&joined)
}

/// The value of a `data` field line (`data`, `data:` or `data: value`).
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(&[]);
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The lines of `text`: where each one's content and its line end (`\n`,
/// `\r`, `\r\n`, or nothing at the very end) are.
fn lines(text: &[u8]) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= text.len() {
            return None;
        }
        let start = at;
        let Some(i) = text[at..].iter().position(|&b| b == b'\n' || b == b'\r') else {
            at = text.len();
            return Some((start..at, at..at));
        };
        let i = start + i;
        let end = if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
            i + 2
        } else {
            i + 1
        };
        at = end;
        Some((start..i, i..end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::secrets::Configured;

    const KEY: &str = "sk-proj-AbCdEf0123456789";

    fn secrets() -> Secrets {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {KEY}").parse().unwrap());
        Secrets::capture(&h, &Configured::none())
    }

    fn error_event() -> String {
        format!("event: error\r\ndata: {{\"error\":{{\"message\":\"bad key {KEY}\"}}}}\r\n\r\n")
    }

    fn masked_error_event() -> String {
        "event: error\r\ndata: {\"error\":{\"message\":\"bad key [redacted]\"}}\r\n\r\n".to_owned()
    }

    /// Feeds `pieces` and returns what went out, frame by frame.
    fn run(pieces: &[&[u8]]) -> Vec<Bytes> {
        let (s, mut e) = (secrets(), ErrorEvents::default());
        let mut out: Vec<Bytes> = pieces
            .iter()
            .map(|p| e.feed(Bytes::copy_from_slice(p), &s))
            .collect();
        out.extend(e.finish(&s));
        out
    }

    fn joined(out: &[Bytes]) -> String {
        String::from_utf8(out.concat()).unwrap()
    }

    #[test]
    fn data_events_pass_in_place() {
        let data = Bytes::from(format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{KEY} error\"}}}}]}}\n\n: ping\n\ndata: [DONE]\n\n"
        ));
        let mut e = ErrorEvents::default();
        let out = e.feed(data.clone(), &secrets());
        assert_eq!(out, data);
        assert_eq!(out.as_ptr(), data.as_ptr(), "not copied");
        assert!(!e.holds());
    }

    #[test]
    fn an_error_event_is_masked_and_the_rest_kept() {
        let text = format!("data: {{\"n\":1}}\n\n{}data: [DONE]\n\n", error_event());
        let out = run(&[text.as_bytes()]);
        assert_eq!(
            joined(&out),
            format!(
                "data: {{\"n\":1}}\n\n{}data: [DONE]\n\n",
                masked_error_event()
            )
        );
    }

    #[test]
    fn an_event_without_an_end_is_looked_at_when_the_stream_ends() {
        let text = format!("data: {{\"error\":{{\"message\":\"{KEY}\"}}}}");
        let out = run(&[text.as_bytes()]);
        assert_eq!(out[0], "", "held back");
        assert_eq!(
            joined(&out),
            "data: {\"error\":{\"message\":\"[redacted]\"}}"
        );
    }

    #[test]
    fn multi_line_data() {
        let text = format!("data: {{\"error\":\ndata: {{\"message\":\"{KEY}\"}}}}\n\n");
        assert_eq!(
            joined(&run(&[text.as_bytes()])),
            "data: {\"error\":\ndata: {\"message\":\"[redacted]\"}}\n\n"
        );
    }

    #[test]
    fn split_at_every_byte() {
        let text = format!(
            "data: {{\"n\":1}}\r\n\r\n{}data: {{\"n\":2}}\r\r{}",
            error_event(),
            error_event()
        );
        let want = format!(
            "data: {{\"n\":1}}\r\n\r\n{}data: {{\"n\":2}}\r\r{}",
            masked_error_event(),
            masked_error_event()
        );
        let bytes = text.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let out = run(&[&bytes[..a], &bytes[a..b], &bytes[b..]]);
                assert_eq!(joined(&out), want, "cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn an_event_past_the_cap_passes_as_it_is() {
        let (s, mut e) = (secrets(), ErrorEvents::default());
        let start = format!("data: {{\"error\":{{\"message\":\"{KEY}");
        let out = e.feed(Bytes::from(start.clone()), &s);
        assert!(out.is_empty() && e.holds());
        let long = Bytes::from(vec![b'x'; 1 << 20]);
        let out = e.feed(long.clone(), &s);
        assert_eq!(out.len(), start.len() + long.len());
        assert!(!e.holds());
        // The overlong event passes to its end; the next is looked at.
        let out = e.feed(Bytes::from(format!("\"}}}}\n\n{}", error_event())), &s);
        assert_eq!(out, format!("\"}}}}\n\n{}", masked_error_event()));
        // A frame that never ends an event is never held whole.
        let out = e.feed(long.clone(), &s);
        assert_eq!(out.as_ptr(), long.as_ptr());
    }

    #[test]
    fn what_is_not_an_error_event() {
        for event in [
            "data: {\"choices\":[]}\n\n",
            "event: error\n\n",
            ": error\n\n",
            "data: [DONE]\n\n",
            "data: {\"message\":{\"error\":1}}\n\n",
        ] {
            assert!(!is_error_event(event.as_bytes()), "{event:?}");
        }
        assert!(is_error_event(b"data:{\"error\":1}"));
    }

    #[test]
    fn a_failed_stream_drops_the_unfinished_event() {
        let (s, mut e) = (secrets(), ErrorEvents::default());
        assert!(e.feed(Bytes::from_static(b"data: {\"n\":"), &s).is_empty());
        e.discard();
        assert!(!e.holds());
        assert_eq!(e.finish(&s), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_pieces(pieces in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
            let (s, mut e) = (secrets(), ErrorEvents::default());
            let mut total = 0;
            for p in &pieces {
                total += e.feed(Bytes::copy_from_slice(p), &s).len();
                proptest::prop_assert!(e.carry.len() <= CARRY_CAP);
            }
            total += e.finish(&s).map_or(0, |b| b.len());
            // Bytes without an error event pass whole.
            let all = pieces.concat();
            if !all.windows(5).any(|w| w == b"error") && !all.contains(&b'\\') {
                proptest::prop_assert_eq!(total, all.len());
            }
        }
    }
}
