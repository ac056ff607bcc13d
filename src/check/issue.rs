//! Why a request is refused, and the envelope it is answered with:
//! [`Issue`].

use http::StatusCode;

use crate::{ApiError, BoxError, ErrorKind};

/// What is wrong with a request, in the order the checks report it: the
/// first issue of a request is the one its caller hears about.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Issue {
    /// The body is larger than the cap (413).
    TooLarge { cap: usize },
    /// The body is not JSON, or not a JSON object.
    InvalidJson,
    /// `model` is missing or null.
    MissingModel,
    /// `model` is not a non-empty string.
    InvalidModel,
    /// `messages` is missing or null.
    MissingMessages,
    /// `messages` is not an array, or is empty.
    InvalidMessages,
    /// Message `index` is not an object or has no valid `role`.
    Role { index: usize },
    /// A field is out of its range or of the wrong type.
    Field {
        name: &'static str,
        expected: &'static str,
    },
    /// The prompt and the requested output exceed the model's window;
    /// `exact` when the prompt was counted by the model's encoding rather
    /// than estimated from below.
    ContextLength {
        param: &'static str,
        exact: bool,
        prompt: u64,
        output: u64,
        window: u64,
    },
}

/// The roles a message may have.
pub(crate) const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl Issue {
    /// The canonical 400 (or 413) envelope for this issue.
    pub(crate) fn into_error(self) -> ApiError {
        let invalid = ApiError::new(ErrorKind::InvalidRequest);
        match self {
            Issue::TooLarge { cap } => invalid
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .with_code("request_too_large")
                .with_message(format!("the request body is larger than {cap} bytes")),
            Issue::InvalidJson => invalid
                .with_code("invalid_json")
                .with_message("the request body is not a JSON object"),
            Issue::MissingModel => invalid
                .with_code("missing_required_field")
                .with_param("model")
                .with_message("`model` is required"),
            Issue::InvalidModel => invalid
                .with_param("model")
                .with_message("`model` must be a non-empty string"),
            Issue::MissingMessages => invalid
                .with_code("missing_required_field")
                .with_param("messages")
                .with_message("`messages` is required"),
            Issue::InvalidMessages => invalid
                .with_param("messages")
                .with_message("`messages` must be a non-empty array"),
            Issue::Role { index } => invalid
                .with_param(format!("messages[{index}].role"))
                .with_message(format!(
                    "`messages[{index}]` must be an object whose `role` is one of {}",
                    ROLES.join(", ")
                )),
            Issue::Field { name, expected } => invalid
                .with_param(name)
                .with_message(format!("`{name}` must be {expected}")),
            Issue::ContextLength {
                param,
                exact,
                prompt,
                output,
                window,
            } => ApiError::new(ErrorKind::ContextLengthExceeded)
                .with_param(param)
                .with_message(format!(
                    "the model's context window is {window} tokens, but the request needs {}{} \
                     ({prompt} in the prompt, {output} for the output)",
                    if exact { "" } else { "at least " },
                    prompt.saturating_add(output)
                )),
        }
    }
}

/// The answer to a body that could not be read: the error the body failed
/// with when it is one the crate knows (a timeout, say), else a 400.
pub(crate) fn unreadable(error: BoxError) -> ApiError {
    if ApiError::is_recognised(&*error) {
        ApiError::from_error(error)
    } else {
        ApiError::new(ErrorKind::InvalidRequest)
            .with_message("the request body could not be read")
            .with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let e = Issue::Role { index: 2 }.into_error();
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "invalid_value");
        assert_eq!(e.param(), Some("messages[2].role"));
        assert_eq!(e.error_type(), "invalid_request_error");
        let e = Issue::TooLarge { cap: 10 }.into_error();
        assert_eq!(e.status(), 413);
        assert_eq!(e.code(), "request_too_large");
        let e = Issue::ContextLength {
            param: "messages",
            exact: false,
            prompt: 900,
            output: 200,
            window: 1000,
        }
        .into_error();
        assert_eq!(e.code(), "context_length_exceeded");
        assert!(
            e.message().contains("needs at least 1100"),
            "{}",
            e.message()
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn unknown_body_errors_are_bad_requests() {
        let e = unreadable("boom".into());
        assert_eq!(e.status(), 400);
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(unreadable(Box::new(io)).status(), 504);
    }
}
