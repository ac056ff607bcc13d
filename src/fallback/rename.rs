//! The JSON body's `model` renamed for a target, every other byte kept.

use bytes::{Bytes, BytesMut};

use crate::json::{key_is, members};

/// `json` with the value of every top-level `"model"` member whose value is
/// a complete string replaced by `model` (as a JSON string); `None` when it
/// has none (not a JSON object, no such member, or its value is not a
/// string), and the body is sent as it is.
pub(crate) fn rename_model(json: &Bytes, model: &str) -> Option<Bytes> {
    let spans: Vec<_> = members(json)
        .filter(|m| m.complete && key_is(&json[m.key.clone()], "model"))
        .map(|m| m.value)
        .filter(|v| json.get(v.start) == Some(&b'"'))
        .collect();
    if spans.is_empty() {
        return None;
    }
    let value = serde_json::to_string(model).expect("a string serializes");
    let mut out = BytesMut::with_capacity(json.len() + spans.len() * value.len());
    let mut at = 0;
    for span in spans {
        out.extend_from_slice(&json[at..span.start]);
        out.extend_from_slice(value.as_bytes());
        at = span.end;
    }
    out.extend_from_slice(&json[at..]);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rename(json: &'static str, model: &str) -> Option<String> {
        rename_model(&Bytes::from_static(json.as_bytes()), model)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn only_the_top_level_value_changes() {
        let body = "{ \"model\" : \"gpt-4o\",\n \"messages\":[{\"role\":\"user\",\"content\":\"model: \\\"x\\\"\",\"model\":\"inner\"}],\"temperature\":0.2 }";
        let renamed = rename(body, "openai/gpt-4o").unwrap();
        assert_eq!(renamed, body.replacen("\"gpt-4o\"", "\"openai/gpt-4o\"", 1));
    }

    #[test]
    fn names_are_escaped_and_escaped_keys_found() {
        assert_eq!(
            rename(r#"{"mod\u0065l":"a"}"#, "b\"c").unwrap(),
            r#"{"mod\u0065l":"b\"c"}"#
        );
    }

    #[test]
    fn nothing_to_rename() {
        assert_eq!(rename(r#"{"messages":[]}"#, "m"), None);
        assert_eq!(rename(r#"{"model":7}"#, "m"), None);
        assert_eq!(rename(r#"[{"model":"a"}]"#, "m"), None);
        assert_eq!(rename("not json", "m"), None);
        assert_eq!(rename(r#"{"model":"a"#, "m"), None, "a cut value");
    }

    proptest::proptest! {
        /// Whatever the object, the renamed body parses to the same object
        /// with the model changed.
        #[test]
        fn the_rest_is_kept(
            keys in proptest::collection::vec("[a-z]{1,6}", 0..5),
            model in "[ -~]{0,12}",
            new in "[ -~]{0,12}",
        ) {
            let mut obj = serde_json::Map::new();
            for k in &keys {
                obj.insert(k.clone(), serde_json::json!({"model": k, "list": [k, 1]}));
            }
            obj.insert("model".into(), serde_json::Value::String(model));
            let text = Bytes::from(serde_json::to_vec(&obj).unwrap());
            let renamed = rename_model(&text, &new).unwrap();
            let mut want = obj.clone();
            want.insert("model".into(), serde_json::Value::String(new));
            let got: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&renamed).unwrap();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
