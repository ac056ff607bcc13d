//! Exact counts and the soundness of the estimate, against the real
//! encodings.

use crate::*;
use tower_http_resilience::check::{ContextWindow, Tokenizer};

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("../fixtures/prompts.json")).unwrap()
}

#[test]
fn counts_equal_the_reference_counts_of_the_fixture() {
    let f = fixture();
    let prompts = f["prompts"].as_array().unwrap();
    let names: Vec<_> = prompts
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["english", "chinese", "code", "long_english"]);
    for p in prompts {
        let text = p["text"].as_str().unwrap();
        for (t, key) in [
            (Tokenizer::O200kBase, "o200k_base"),
            (Tokenizer::Cl100kBase, "cl100k_base"),
        ] {
            let reference = p[key].as_u64().unwrap();
            assert_eq!(t.count(text), reference, "{} with {key}", p["name"]);
            let estimate = Tokenizer::Estimate.count(text);
            assert!(
                estimate <= reference,
                "{}: estimate {estimate} > {reference}",
                p["name"]
            );
        }
    }
}

#[test]
fn counts_equal_published_counts() {
    // Printed in OpenAI's cookbook notebook "How to count tokens with
    // tiktoken" (cl100k_base).
    for p in fixture()["published"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            Tokenizer::Cl100kBase.count(text),
            p["cl100k_base"].as_u64().unwrap(),
            "{text}"
        );
    }
}

/// The cookbook's example conversation: 129 prompt tokens counted by
/// the OpenAI API for gpt-4-0613 (cl100k_base), with `max_tokens: 1`.
fn cookbook_conversation() -> String {
    serde_json::json!({
        "model": "gpt-4-0613",
        "max_tokens": 1,
        "messages": [
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
        ]
    })
    .to_string()
}

#[tokio::test]
async fn a_chat_request_counts_as_the_api_bills_it() {
    let body = cookbook_conversation();
    let window = |tokens| ContextWindow::new(tokens, Tokenizer::Cl100kBase);
    let layer = CheckLayer::new().context_window("gpt-4-0613", window(130));
    let (res, seen) = call(&layer, post(CHAT, &body)).await;
    res.unwrap();
    let tokens = seen.last_tokens().unwrap();
    assert_eq!(tokens.exact(), Some((Tokenizer::Cl100kBase, 129)));
    assert_eq!(tokens.output(), 1);
    assert!(tokens.estimate() < 129);

    let layer = CheckLayer::new().context_window("gpt-4-0613", window(129));
    let (res, seen) = call(&layer, post(CHAT, &body)).await;
    let err = res.unwrap_err();
    assert_eq!(err.code(), "context_length_exceeded");
    assert!(
        err.message()
            .contains("needs 130 (129 in the prompt, 1 for the output)"),
        "{}",
        err.message()
    );
    assert_eq!(seen.calls(), 0);
}

#[tokio::test]
async fn an_exact_count_refuses_what_the_estimate_lets_through() {
    let f = fixture();
    let chinese = f["prompts"][1]["text"].as_str().unwrap();
    let o200k = f["prompts"][1]["o200k_base"].as_u64().unwrap();
    let body =
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": chinese}]})
            .to_string();
    // 3 per message, 1 for the role "user", 3 for the reply.
    let prompt = o200k + 3 + 1 + 3;
    let exact =
        CheckLayer::new().context_window("m", ContextWindow::new(prompt - 1, Tokenizer::O200kBase));
    let (res, _) = call(&exact, post(CHAT, &body)).await;
    let err = res.unwrap_err();
    assert!(
        err.message().contains(&format!("{prompt} in the prompt")),
        "{}",
        err.message()
    );
    let estimate = CheckLayer::new().context_window("m", prompt - 1);
    let (res, seen) = call(&estimate, post(CHAT, &body)).await;
    res.unwrap();
    assert_eq!(seen.last_tokens().unwrap().exact(), None);
    // A window the text's bytes fit in needs no encoding at all.
    let roomy =
        CheckLayer::new().context_window("m", ContextWindow::new(4096, Tokenizer::O200kBase));
    let (res, seen) = call(&roomy, post(CHAT, &body)).await;
    res.unwrap();
    assert_eq!(seen.last_tokens().unwrap().exact(), None);
}

fn tricky_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "Z",
        "'",
        "'s",
        "'ll",
        "''",
        "’",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        " \n",
        ".",
        ",",
        "!",
        "(",
        ")",
        "/",
        "//",
        "-",
        "_",
        "\"",
        "{",
        "}",
        ";",
        "=",
        "@",
        "~",
        "*",
        "#",
        "...",
        "://",
        "1",
        "23",
        "456",
        "1,000",
        "é",
        "中",
        "文",
        "，",
        "。",
        "—",
        "…",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        "\u{85}",
        "²",
        "①",
        "Ⅻ",
        "١",
        "\u{301}",
        "ि",
        "ก",
        "Ω",
        "я",
        "ア",
        "😀",
        "\u{200b}",
        "\x01",
        "\x0b",
        "\x1c",
        "<|endoftext|>",
        "hello",
        " world",
        "HTTP",
        "don't",
        "__init__",
        "    ",
    ]);
    prop_oneof![
        3 => prop::collection::vec(pieces, 0..80).prop_map(|v| v.concat()),
        1 => "\\PC{0,80}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The estimate never exceeds either encoding's count.
    #[test]
    fn the_estimate_is_a_lower_bound(s in tricky_text()) {
        let estimate = Tokenizer::Estimate.count(&s);
        prop_assert!(estimate <= Tokenizer::O200kBase.count(&s), "o200k: {s:?}");
        prop_assert!(estimate <= Tokenizer::Cl100kBase.count(&s), "cl100k: {s:?}");
    }
}
