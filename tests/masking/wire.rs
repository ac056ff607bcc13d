use crate::*;

#[tokio::test]
async fn no_echo_brings_a_credential_back_through_the_gateway() {
    let up = serve(upstream()).await;
    let gw = gateway(up).await;
    for credential in CREDENTIALS {
        let secrets = [credential.1, UPSTREAM_KEY];
        for how in ECHOES {
            let what = format!("{how} / {}", credential.0);
            let (parts, body) = support::send(request(gw, how, credential)).await;
            assert_clean_head(&what, &parts, &secrets);
            assert_clean(&what, &body, &secrets);
            match how {
                "success-header" => {
                    assert_eq!(parts.status, 200, "{what}");
                    assert_eq!(&body[..], b"{\"ok\":true}", "{what}: body untouched");
                    assert!(parts.headers["x-echo"].to_str().unwrap().contains(REDACTED));
                }
                "grpc" => {
                    assert_eq!(parts.headers["grpc-status"], "16", "{what}");
                    assert!(parts.headers["grpc-message"]
                        .to_str()
                        .unwrap()
                        .starts_with("invalid%20key"));
                }
                _ => {
                    assert!(parts.status.as_u16() >= 400, "{what}");
                    // A rewritten or passed-through body is still the envelope.
                    support::envelope(&body);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_canonical_envelope_passes_through_masked() {
    let up = serve(upstream()).await;
    let gw = gateway(up).await;
    let (parts, body) = support::send(request(gw, "canonical", CREDENTIALS[2])).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    let err = support::envelope(&body);
    assert_eq!(
        err["code"], "invalid_api_key",
        "the upstream's own envelope"
    );
    assert_eq!(
        err["message"],
        format!("Incorrect API key provided: {REDACTED}, {REDACTED}.")
    );
    assert!(parts.headers.contains_key("x-request-id"));
    assert_eq!(
        parts.headers["content-length"],
        body.len().to_string().as_str()
    );
}

#[tokio::test]
async fn success_bodies_pass_byte_for_byte() {
    let up = serve(upstream()).await;
    let gw = gateway(up).await;
    for credential in CREDENTIALS {
        let (parts, body) = support::send(request(gw, "success-body", credential)).await;
        assert_eq!(parts.status, 200);
        let want = success_body(&[credential.1.to_owned(), UPSTREAM_KEY.to_owned()]);
        assert_eq!(&body[..], &want[..], "{}", credential.0);
    }
}

#[tokio::test]
async fn error_events_late_in_a_success_stream_are_masked() {
    let up = serve(upstream()).await;
    let gw = gateway(up).await;
    for credential in CREDENTIALS {
        let what = credential.0;
        let (parts, body) = support::send(request(gw, "sse-late", credential)).await;
        assert_eq!(parts.status, 200, "{what}");
        assert_clean_head(what, &parts, &[credential.1, UPSTREAM_KEY]);
        assert_clean(what, &body, &[credential.1, UPSTREAM_KEY]);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(
            text.starts_with(DATA_EVENTS),
            "{what}: data events untouched"
        );
        assert!(text.ends_with("data: [DONE]\n\n"), "{what}");
        let errors: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| d.contains("\"error\""))
            .map(|d| serde_json::from_str(d).expect("an error event stays JSON"))
            .collect();
        assert_eq!(errors.len(), 2, "{what}");
        // A bearer credential keeps its scheme word.
        let sent = match credential.1.strip_prefix("Bearer ") {
            Some(_) => format!("Bearer {REDACTED}"),
            None => REDACTED.to_owned(),
        };
        assert_eq!(
            errors[0]["error"]["message"],
            format!("Incorrect API key provided: {sent}, {REDACTED}"),
            "{what}"
        );
        assert_eq!(errors[0]["error"]["code"], "invalid_api_key");
        assert_eq!(errors[1]["type"], "error");
        assert_eq!(
            errors[1]["error"]["message"],
            format!("bad key {sent} {REDACTED}"),
            "{what}"
        );
    }
}
