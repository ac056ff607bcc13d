use crate::*;

/// The check table, written again over `serde_json::Value`: the first
/// issue of a chat request as (code, param), or `None` when it is valid.
fn oracle(v: &serde_json::Value) -> Option<(&'static str, Option<String>)> {
    use serde_json::Value;
    let Value::Object(o) = v else {
        return Some(("invalid_json", None));
    };
    match o.get("model") {
        None | Some(Value::Null) => return Some(("missing_required_field", Some("model".into()))),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Some(("invalid_value", Some("model".into()))),
    }
    match o.get("messages") {
        None | Some(Value::Null) => {
            return Some(("missing_required_field", Some("messages".into())))
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            let roles = [
                "system",
                "developer",
                "user",
                "assistant",
                "tool",
                "function",
            ];
            for (i, m) in a.iter().enumerate() {
                let ok = m
                    .get("role")
                    .and_then(Value::as_str)
                    .is_some_and(|r| roles.contains(&r));
                if !m.is_object() || !ok {
                    return Some(("invalid_value", Some(format!("messages[{i}].role"))));
                }
            }
        }
        Some(_) => return Some(("invalid_value", Some("messages".into()))),
    }
    let number = |v: &Value, lo: f64, hi: f64| v.as_f64().is_some_and(|n| n >= lo && n <= hi);
    let whole = |v: &Value, lo: f64, hi: f64| {
        v.as_f64()
            .is_some_and(|n| n.fract() == 0.0 && n >= lo && n <= hi)
    };
    type Rule<'r> = (&'r str, &'r dyn Fn(&Value) -> bool);
    let rules: [Rule<'_>; 8] = [
        ("temperature", &|v| number(v, 0.0, 2.0)),
        ("top_p", &|v| number(v, 0.0, 1.0)),
        ("presence_penalty", &|v| number(v, -2.0, 2.0)),
        ("frequency_penalty", &|v| number(v, -2.0, 2.0)),
        ("n", &|v| whole(v, 1.0, 128.0)),
        ("max_tokens", &|v| whole(v, 1.0, f64::INFINITY)),
        ("max_completion_tokens", &|v| whole(v, 1.0, f64::INFINITY)),
        ("stream", &|v| v.is_boolean()),
    ];
    for (name, ok) in rules {
        match o.get(name) {
            None | Some(Value::Null) => {}
            Some(v) if ok(v) => {}
            Some(_) => return Some(("invalid_value", Some(name.into()))),
        }
    }
    None
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-300i64..300).prop_map(|n| json!(n)),
        prop::sample::select(vec![
            -2.5, -2.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.01, 128.0, 1e20
        ])
        .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "system",
            "developer",
            "assistant",
            "tool",
            "function",
            "bot",
            ""
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["role", "content", "name", "type", "text", "x"]),
                inner,
                0..4
            )
            .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ]
    })
}

/// A value for a ranged field: a number near the edges of its range
/// (inside and out), a whole number written as a float, `null`, or any
/// JSON value.
fn ranged(edges: &'static [f64]) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        6 => prop::sample::select(edges).prop_map(|f| json!(f)),
        2 => prop::sample::select(edges)
            .prop_filter("whole", |f| f.fract() == 0.0 && f.abs() < 1e15)
            .prop_map(|f| json!(f as i64)),
        1 => Just(serde_json::Value::Null),
        1 => json_value(),
    ]
}

/// A chat-shaped object, mostly valid: each known key present or not,
/// with values at the edges of the table's ranges, messages whose roles
/// are mostly valid, and unknown keys with any value.
fn chat_object() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    const ROLES: &[&str] = &[
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ];
    let role = prop_oneof![
        9 => prop::sample::select(ROLES).prop_map(|r| json!(r)),
        1 => json_leaf(),
    ];
    let message = prop_oneof![
        9 => (role, "\\PC{0,40}").prop_map(|(role, content)| json!({"role": role, "content": content})),
        1 => json_value(),
    ];
    let messages = prop_oneof![
        9 => prop::collection::vec(message, 1..4).prop_map(serde_json::Value::Array),
        1 => json_value(),
    ];
    let model = prop_oneof![9 => Just(json!("gpt-4o")), 1 => json_leaf()];
    let fields = (
        ranged(&[-0.001, 0.0, 1.0, 2.0, 2.001]),
        ranged(&[-0.001, 0.0, 0.5, 1.0, 1.001]),
        ranged(&[-2.001, -2.0, 0.0, 2.0, 2.001]),
        ranged(&[-2.001, -2.0, 0.0, 2.0, 2.001]),
        ranged(&[0.0, 1.0, 1.5, 128.0, 129.0]),
        ranged(&[-1.0, 0.0, 1.0, 1.5, 1e18]),
        ranged(&[-1.0, 0.0, 1.0, 1.5, 1e18]),
        prop_oneof![4 => any::<bool>().prop_map(|b| json!(b)), 1 => json_value()],
    );
    let names = [
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stream",
    ];
    (
        prop::collection::vec(prop::bool::weighted(0.9), 2),
        prop::collection::vec(prop::bool::weighted(0.3), names.len()),
        model,
        messages,
        fields,
        prop::collection::vec(("[a-z_]{1,12}", json_value()), 0..3),
    )
        .prop_map(move |(required, present, model, messages, f, unknown)| {
            let mut o = serde_json::Map::new();
            for (k, v) in unknown {
                o.insert(k, v);
            }
            if required[0] {
                o.insert("model".into(), model);
            }
            if required[1] {
                o.insert("messages".into(), messages);
            }
            let values = [f.0, f.1, f.2, f.3, f.4, f.5, f.6, f.7];
            for ((name, value), on) in names.iter().zip(values).zip(present) {
                if on {
                    o.insert((*name).to_owned(), value);
                }
            }
            serde_json::Value::Object(o)
        })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a chat request holds, the layer refuses exactly what the
    /// table refuses, with the table's code and param, and forwards the
    /// rest unchanged, in compact or pretty form.
    #[test]
    fn accepted_objects_are_forwarded_unchanged(v in chat_object(), pretty in any::<bool>()) {
        let body = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
        let (res, seen) = block_on(call(&CheckLayer::new(), post(CHAT, &body)));
        match (oracle(&v), res) {
            (None, Ok(())) => {
                prop_assert_eq!(seen.calls(), 1);
                prop_assert_eq!(seen.last_body(), body.as_bytes());
            }
            (Some((code, param)), Err(e)) => {
                prop_assert_eq!(e.code(), code);
                prop_assert_eq!(e.param().map(str::to_owned), param);
                prop_assert_eq!(seen.calls(), 0);
            }
            (expected, got) => prop_assert!(false, "{body}: expected {expected:?}, got {got:?}"),
        }
    }

    /// No body, whatever its bytes and framing, makes the layer panic, and
    /// none is read past the cap (and the frame that crossed it).
    #[test]
    fn no_input_panics_or_is_read_past_the_cap(
        chunks in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                "[\\[\\]{}\":,a-z0-9 ]{0,64}".prop_map(String::into_bytes),
            ],
            0..8,
        ),
        cap in 0usize..300,
        path in prop::sample::select(vec![CHAT, COMPLETIONS, EMBEDDINGS]),
    ) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let largest = chunks.iter().map(Vec::len).max().unwrap_or(0);
        let all = chunks.concat();
        let (body, read) = Chunks::new(chunks);
        let seen = Seen::default();
        let svc = CheckLayer::new()
            .max_body(cap)
            .context_window("m", 5)
            .layer(upstream::<Chunks>(&seen));
        let res = block_on(svc.oneshot(post_chunks(path, body)));
        prop_assert!(read.load(Ordering::SeqCst) <= cap + largest);
        match res {
            Ok(_) => {
                prop_assert!(total <= cap);
                prop_assert_eq!(seen.last_body(), &all[..]);
            }
            Err(e) if total > cap => prop_assert_eq!(e.status(), 413),
            Err(e) => {
                prop_assert_eq!(e.status(), 400);
                prop_assert_eq!(seen.calls(), 0);
            }
        }
    }
}
