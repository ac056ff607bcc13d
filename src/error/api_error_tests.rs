//! Unit tests of `ApiError`.

use super::*;

#[test]
fn secrets_are_masked() {
    let e = ApiError::new(ErrorKind::Authentication)
        .with_message("Incorrect API key provided: sk-proj-abc123def456. Check it.");
    assert_eq!(
        e.message(),
        "Incorrect API key provided: [redacted]. Check it."
    );
    let e =
        ApiError::new(ErrorKind::Authentication).with_message("header was Bearer abcdefghijklmnop");
    assert_eq!(e.message(), "header was Bearer [redacted]");
    let e = ApiError::new(ErrorKind::Authentication).with_message("ask-me later");
    assert_eq!(e.message(), "ask-me later");
}

#[test]
fn long_messages_are_cut_on_a_char_boundary() {
    let long = "余".repeat(2000);
    let e = ApiError::new(ErrorKind::Internal).with_message(long);
    assert!(e.message().len() <= MAX_MESSAGE_LEN);
    assert!(e.message().ends_with('…'));
}

#[test]
fn request_ids_are_validated() {
    let e = ApiError::new(ErrorKind::Internal).with_request_id("abc-123");
    assert_eq!(e.request_id(), Some("abc-123"));
    let e = ApiError::new(ErrorKind::Internal).with_request_id("has space");
    assert_eq!(e.request_id(), None);
    let e = ApiError::new(ErrorKind::Internal).with_request_id("x".repeat(129));
    assert_eq!(e.request_id(), None);
}

#[test]
fn display_is_lower_case_and_compact() {
    let e = ApiError::new(ErrorKind::Unavailable);
    assert_eq!(
        e.to_string(),
        "503 service_unavailable: the service is unavailable"
    );
    assert_eq!(
        std::mem::size_of::<ApiError>(),
        std::mem::size_of::<usize>()
    );
}
