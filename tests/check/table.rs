use crate::*;

#[tokio::test]
async fn every_row_of_the_table_is_refused_with_its_code_and_param() {
    let long = serde_json::to_string(&long_prose()).unwrap();
    let long_chat =
        format!(r#"{{"model":"small","messages":[{{"role":"user","content":{long}}}]}}"#);
    let long_completion = format!(r#"{{"model":"small","prompt":["short",{long}]}}"#);
    let long_input = format!(r#"{{"model":"small","input":{long}}}"#);
    let msgs = |m: &str| format!(r#"{{"model":"gpt-4o","messages":{m}}}"#);
    #[rustfmt::skip]
    let rows: Vec<(&str, String, &str, Option<String>)> = vec![
        (CHAT, "{\"model\":".into(), "invalid_json", None),
        (CHAT, "[1,2]".into(), "invalid_json", None),
        (CHAT, "\"text\"".into(), "invalid_json", None),
        (CHAT, "null".into(), "invalid_json", None),
        (CHAT, "".into(), "invalid_json", None),
        (CHAT, format!("{} x", chat("")), "invalid_json", None),
        (CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\u{0}\"}]}".into(), "invalid_json", None),
        (CHAT, format!(r#"{{"messages":{USER}}}"#), "missing_required_field", Some("model".into())),
        (CHAT, format!(r#"{{"model":null,"messages":{USER}}}"#), "missing_required_field", Some("model".into())),
        (CHAT, format!(r#"{{"model":"","messages":{USER}}}"#), "invalid_value", Some("model".into())),
        (CHAT, format!(r#"{{"model":5,"messages":{USER}}}"#), "invalid_value", Some("model".into())),
        (CHAT, format!(r#"{{"model":["gpt-4o"],"messages":{USER}}}"#), "invalid_value", Some("model".into())),
        (CHAT, r#"{"model":"gpt-4o"}"#.into(), "missing_required_field", Some("messages".into())),
        (CHAT, msgs("null"), "missing_required_field", Some("messages".into())),
        (CHAT, msgs("\"hi\""), "invalid_value", Some("messages".into())),
        (CHAT, msgs("{}"), "invalid_value", Some("messages".into())),
        (CHAT, msgs("[]"), "invalid_value", Some("messages".into())),
        (CHAT, msgs(r#"[{"role":"robot","content":"hi"}]"#), "invalid_value", Some("messages[0].role".into())),
        (CHAT, msgs(r#"[{"role":"user","content":"hi"},"hi"]"#), "invalid_value", Some("messages[1].role".into())),
        (CHAT, msgs(r#"[{"role":"user"},{"role":"system"},{"content":"no role"}]"#), "invalid_value", Some("messages[2].role".into())),
        (CHAT, msgs(r#"[{"role":"user"},{"role":5},{"role":"nope"}]"#), "invalid_value", Some("messages[1].role".into())),
        (CHAT, msgs(r#"[{"role":"User","content":"hi"}]"#), "invalid_value", Some("messages[0].role".into())),
        (CHAT, msgs(r#"[{"role":null}]"#), "invalid_value", Some("messages[0].role".into())),
        (CHAT, chat(r#","temperature":-0.1"#), "invalid_value", Some("temperature".into())),
        (CHAT, chat(r#","temperature":2.0001"#), "invalid_value", Some("temperature".into())),
        (CHAT, chat(r#","temperature":"1""#), "invalid_value", Some("temperature".into())),
        (CHAT, chat(r#","top_p":1.5"#), "invalid_value", Some("top_p".into())),
        (CHAT, chat(r#","top_p":-0.1"#), "invalid_value", Some("top_p".into())),
        (CHAT, chat(r#","presence_penalty":2.5"#), "invalid_value", Some("presence_penalty".into())),
        (CHAT, chat(r#","presence_penalty":true"#), "invalid_value", Some("presence_penalty".into())),
        (CHAT, chat(r#","frequency_penalty":-2.01"#), "invalid_value", Some("frequency_penalty".into())),
        (CHAT, chat(r#","n":0"#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","n":129"#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","n":1.5"#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","n":"2""#), "invalid_value", Some("n".into())),
        (CHAT, chat(r#","max_tokens":0"#), "invalid_value", Some("max_tokens".into())),
        (CHAT, chat(r#","max_tokens":-1"#), "invalid_value", Some("max_tokens".into())),
        (CHAT, chat(r#","max_tokens":10.5"#), "invalid_value", Some("max_tokens".into())),
        (CHAT, chat(r#","max_completion_tokens":0"#), "invalid_value", Some("max_completion_tokens".into())),
        (CHAT, chat(r#","max_completion_tokens":[1]"#), "invalid_value", Some("max_completion_tokens".into())),
        (CHAT, chat(r#","stream":"true""#), "invalid_value", Some("stream".into())),
        (CHAT, chat(r#","stream":1"#), "invalid_value", Some("stream".into())),
        (CHAT, long_chat, "context_length_exceeded", Some("messages".into())),
        (COMPLETIONS, r#"{"prompt":"hi"}"#.into(), "missing_required_field", Some("model".into())),
        (COMPLETIONS, r#"{"model":"m","temperature":3}"#.into(), "invalid_value", Some("temperature".into())),
        (COMPLETIONS, r#"{"model":"m","n":0}"#.into(), "invalid_value", Some("n".into())),
        (COMPLETIONS, r#"{"model":"m","max_tokens":-1}"#.into(), "invalid_value", Some("max_tokens".into())),
        (COMPLETIONS, r#"{"model":"m","stream":"yes"}"#.into(), "invalid_value", Some("stream".into())),
        (COMPLETIONS, long_completion, "context_length_exceeded", Some("prompt".into())),
        (EMBEDDINGS, r#"{"input":"hi"}"#.into(), "missing_required_field", Some("model".into())),
        (EMBEDDINGS, r#"{"model":"","input":"hi"}"#.into(), "invalid_value", Some("model".into())),
        (EMBEDDINGS, "{oops".into(), "invalid_json", None),
        (EMBEDDINGS, long_input, "context_length_exceeded", Some("input".into())),
    ];
    let layer = CheckLayer::new().context_window("small", 1000);
    for (path, body, code, param) in rows {
        let (res, seen) = call(&layer, post(path, &body)).await;
        let err = res.expect_err(&body);
        assert_eq!(err.status(), 400, "{body}");
        assert_eq!(err.error_type(), "invalid_request_error", "{body}");
        assert_eq!(err.code(), code, "{body}");
        assert_eq!(err.param(), param.as_deref(), "{body}");
        assert!(!err.is_retryable(), "{body}");
        assert_eq!(seen.calls(), 0, "no upstream call for {body}");
    }
}

#[tokio::test]
async fn the_first_failing_row_is_the_answer() {
    // `model` comes before `messages`, which comes before the ranged fields,
    // whatever the order of the keys in the body.
    let body = r#"{"temperature":9,"messages":[],"model":""}"#;
    let (res, _) = call(&CheckLayer::new(), post(CHAT, body)).await;
    assert_eq!(res.unwrap_err().param(), Some("model"));
    let body = r#"{"n":0,"temperature":9,"model":"m","messages":[{"role":"user"}]}"#;
    let (res, _) = call(&CheckLayer::new(), post(CHAT, body)).await;
    assert_eq!(res.unwrap_err().param(), Some("temperature"));
}

#[tokio::test]
async fn valid_requests_reach_the_upstream_byte_for_byte() {
    #[rustfmt::skip]
    let rows: Vec<(&str, &str)> = vec![
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"2+2?"}]}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}]}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"function","name":"f","content":"1"}]}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":2}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":2.0,"top_p":0,"presence_penalty":-2,"frequency_penalty":2,"n":128,"max_tokens":1,"max_completion_tokens":4096,"stream":false}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"auto"}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x_vendor":{"safe_mode":1e400,"deep":[[[[]]]]},"top_k":40,"repetition_penalty":1.1}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":null,"n":null,"max_tokens":null,"stream":null}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"n":2.0}"#),
        (CHAT, "{\n  \"model\" : \"gpt-4o\",\n  \"messages\" : [ { \"role\" : \"system\", \"content\" : \"tab\\there \\\"quoted\\\" \\u00e9\" } ]\n}\n"),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":7,"temperature":0.7}"#),
        (CHAT, r#"{"model":"gpt-4o","messages":[{"role":"us\u0065r","content":"escaped role"}]}"#),
        ("/openai/deployments/prod/chat/completions?api-version=2024-10-21", r#"{"messages":[{"role":"user","content":"hi"}]}"#),
        (COMPLETIONS, r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi","max_tokens":0,"echo":true,"logprobs":0}"#),
        (COMPLETIONS, r#"{"model":"m","prompt":[[1,2,3],[4]],"max_completion_tokens":0}"#),
        (EMBEDDINGS, r#"{"model":"text-embedding-3-small","input":["one","two"],"dimensions":256,"temperature":"ignored here"}"#),
        (EMBEDDINGS, r#"{"model":"text-embedding-3-small","input":[1,2,3],"encoding_format":"float"}"#),
    ];
    let layer = CheckLayer::new();
    for (path, body) in rows {
        let (res, seen) = call(&layer, post(path, body)).await;
        res.unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(seen.calls(), 1, "{body}");
        assert_eq!(seen.last_body(), body.as_bytes(), "byte for byte: {body}");
        assert!(seen.last_tokens().is_some(), "tokens published: {body}");
    }
}

#[tokio::test]
async fn prompt_tokens_are_published_for_the_layers_inside() {
    let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Hello, world!"},{"role":"user","content":"e.g. 1234567"}],"max_tokens":300}"#;
    let (res, seen) = call(&CheckLayer::new(), post(CHAT, body)).await;
    res.unwrap();
    let tokens = seen.last_tokens().unwrap();
    // "Hello" "," " world" "!" and "e" ".g" "." " 123" "456" "7"
    assert_eq!(tokens.estimate(), 4 + 6);
    assert_eq!(tokens.output(), 300);
    assert_eq!(tokens.exact(), None, "no window, no exact count");
    assert!(tokens.fits(310));
    assert!(!tokens.fits(309));
}

#[tokio::test]
async fn with_a_1000_token_window_a_6kb_prompt_is_refused_and_a_200_character_one_sent() {
    let layer = CheckLayer::new().context_window("small", 1000);
    let prose = long_prose();
    assert!(prose.is_ascii() && (6000..6500).contains(&prose.len()));
    let request = |text: &str, extra: &str| {
        let text = serde_json::to_string(text).unwrap();
        format!(r#"{{"model":"small","messages":[{{"role":"user","content":{text}}}]{extra}}}"#)
    };

    let (res, seen) = call(&layer, post(CHAT, &request(&prose, ""))).await;
    let err = res.unwrap_err();
    assert_eq!(err.code(), "context_length_exceeded");
    assert_eq!(err.param(), Some("messages"));
    assert!(err.message().contains("1000 tokens"), "{}", err.message());
    assert_eq!(seen.calls(), 0);

    let short = &prose[..200];
    let (res, seen) = call(&layer, post(CHAT, &request(short, r#","max_tokens":900"#))).await;
    res.unwrap();
    assert_eq!(seen.calls(), 1);
    // The short prompt with a large output does not fit.
    let (res, _) = call(&layer, post(CHAT, &request(short, r#","max_tokens":990"#))).await;
    assert_eq!(res.unwrap_err().code(), "context_length_exceeded");
    // Another model has no window configured: nothing to refuse.
    let other = request(&prose, "").replace("\"small\"", "\"large\"");
    let (res, seen) = call(&layer, post(CHAT, &other)).await;
    res.unwrap();
    assert!(!seen.last_tokens().unwrap().fits(1000));
}
