//! [`Walk`]: where a call is in its targets, and what each target makes of
//! its request.

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::rename::rename_model;
use super::served::Served;
use super::target::Target;
use super::targets::Targets;
use crate::metrics::AttemptSeries;
use crate::retry::{Replay, ReplayBody};
use crate::{ApiError, ErrorKind};

/// A call's way through its targets: the one it is on, and its body as
/// renamed for it.
pub(crate) struct Walk {
    targets: Targets,
    index: usize,
    /// The body renamed for target `.0`, kept for its retries (boxed: a
    /// call without a renaming target keeps a pointer).
    renamed: Option<Box<(usize, Bytes)>>,
}

/// The body of the next attempt on the current target.
pub(crate) enum NextBody<B> {
    /// Send this.
    Ready(ReplayBody<B>),
    /// The target renames the model: the caller's body must be read whole
    /// first; this body reads it.
    ReadWhole(ReplayBody<B>),
    /// The body cannot be sent again (held by an earlier attempt, over the
    /// replay limit, or failed).
    Gone,
    /// The body is needed whole and cannot be (over the replay limit).
    TooLarge,
}

impl Walk {
    pub(crate) fn new(targets: Targets) -> Self {
        Walk {
            targets,
            index: 0,
            renamed: None,
        }
    }

    /// Whether the call has the default target alone: nothing to rewrite.
    pub(crate) fn is_plain(&self) -> bool {
        self.targets.is_plain()
    }

    fn target(&self) -> Option<&Target> {
        self.targets.get(self.index)
    }

    /// Moves to the first target from `from` on whose window the request
    /// (whose extensions are `ext`) fits; `false` when none does (the
    /// walk then stays where it was).
    fn seek(&mut self, from: usize, ext: &http::Extensions) -> bool {
        let len = self.targets.len();
        match (from..len).find(|&i| self.targets.get(i).is_none_or(|t| t.fits(ext))) {
            Some(i) => {
                self.index = i;
                true
            }
            None => false,
        }
    }

    /// Takes the call to its first target that can serve it; the error
    /// when the prompt is too long for every target's model.
    pub(crate) fn start(&mut self, ext: &http::Extensions) -> Result<(), ApiError> {
        if self.is_plain() || self.seek(0, ext) {
            return Ok(());
        }
        Err(too_long())
    }

    /// Takes the call to the next target that can serve it; `Err` with
    /// whether a target was skipped for its window when none is left.
    pub(crate) fn advance(&mut self, ext: &http::Extensions) -> Result<(), bool> {
        let from = self.index + 1;
        if from >= self.targets.len() {
            return Err(false);
        }
        if self.seek(from, ext) {
            Ok(())
        } else {
            Err(true)
        }
    }

    /// Whether a target after the current one may serve the call.
    pub(crate) fn has_next(&self, ext: &http::Extensions) -> bool {
        let from = self.index + 1;
        (from..self.targets.len()).any(|i| self.targets.get(i).is_none_or(|t| t.fits(ext)))
    }

    /// The retries allowed on the current target.
    pub(crate) fn retries(&self, default: u32) -> u32 {
        self.target()
            .and_then(Target::retry_limit)
            .unwrap_or(default)
    }

    /// Which target the outcome comes from (none for the default target).
    pub(crate) fn served(&self) -> Option<Served> {
        let target = self.target()?;
        Some(Served::new(target.shared_name().clone(), self.index))
    }

    /// Where the current target's attempts are counted (the default
    /// target's: `target="default"`).
    pub(crate) fn series(&self) -> &AttemptSeries {
        match self.target() {
            Some(target) => target.series(),
            None => crate::metrics::default_attempts(),
        }
    }

    /// Whether the current target renames the model (its body is needed
    /// whole).
    pub(crate) fn renames(&self) -> bool {
        self.target().is_some_and(|t| t.renamed_model().is_some())
    }

    /// Rewrites an attempt's request head for the current target: 400 when
    /// the path would leave the target's base.
    pub(crate) fn rewrite(&self, parts: &mut Parts) -> Result<(), ApiError> {
        let Some(target) = self.target() else {
            return Ok(());
        };
        target.apply(parts).map_err(|unsafe_path| {
            ApiError::new(ErrorKind::InvalidRequest)
                .with_message(unsafe_path.to_string())
                .with_code("invalid_path")
        })
    }

    /// The body of the next attempt on the current target, from the call's
    /// replay; `head` gets the renamed body's length.
    pub(crate) fn body<B>(&mut self, replay: &Replay<B>, head: &mut Parts) -> NextBody<B> {
        let Some(model) = self.target().and_then(Target::renamed_model) else {
            return replay.next_body().map_or(NextBody::Gone, NextBody::Ready);
        };
        let renamed = match self.renamed.as_deref() {
            Some((i, renamed)) if *i == self.index => renamed.clone(),
            _ => {
                let Some(whole) = replay.whole() else {
                    return match replay.replayable() {
                        Some(true) => replay
                            .next_body()
                            .map_or(NextBody::Gone, NextBody::ReadWhole),
                        Some(false) => NextBody::TooLarge,
                        None => NextBody::Gone,
                    };
                };
                let renamed = rename_model(&whole, model).unwrap_or(whole);
                self.renamed = Some(Box::new((self.index, renamed.clone())));
                renamed
            }
        };
        if head.headers.contains_key(CONTENT_LENGTH) {
            head.headers
                .insert(CONTENT_LENGTH, HeaderValue::from(renamed.len()));
        }
        NextBody::Ready(ReplayBody::rewritten(renamed))
    }
}

/// The answer when no target's window can take the prompt.
pub(crate) fn too_long() -> ApiError {
    ApiError::new(ErrorKind::ContextLengthExceeded)
        .with_message(
            "the prompt and the requested output are longer than the context window of every \
             model this call may go to",
        )
        .with_param("messages")
}

/// The answer when the body must be renamed and is over the replay limit.
pub(crate) fn too_large() -> ApiError {
    ApiError::new(ErrorKind::InvalidRequest)
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_message(
            "the request body is larger than the replay limit, so its model cannot be renamed",
        )
}
