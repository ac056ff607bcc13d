//! The credentials in a Redis address, and their removal from every error
//! text, so that no notice ever repeats them.

/// The password and user name in `url`'s authority and its `pass`/`password`
/// query parameters (raw and percent-decoded), longest first.
pub(super) fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((user, pass)) => {
                out.push(pass.to_owned());
                out.push(user.to_owned());
            }
            None => out.push(userinfo.to_owned()),
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                if matches!(k, "pass" | "password" | "user" | "username") {
                    out.push(v.to_owned());
                }
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes every non-empty secret and control characters from `text`, and
/// keeps at most 200 bytes of it.
pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s.as_str(), "***");
    }
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::util::truncate(&clean, 200).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_credential() {
        assert_eq!(secrets("redis://:hunter2@host:6379/0"), ["hunter2"]);
        assert_eq!(
            secrets("redis://alice:s%40cret@host"),
            ["s%40cret", "s@cret", "alice"]
        );
        assert_eq!(
            secrets("redis+unix:///run/r.sock?db=1&pass=topsecret"),
            ["topsecret"]
        );
        assert!(secrets("redis+unix:///run/redis.sock").is_empty());
        assert!(secrets("redis://127.0.0.1:6379").is_empty());
    }

    #[test]
    fn scrub_hides_secrets_and_controls() {
        let secrets = ["hunter2".to_owned(), String::new()];
        assert_eq!(scrub("auth hunter2\nfailed", &secrets), "auth *** failed");
        assert_eq!(scrub("x", &secrets), "x");
        assert_eq!(scrub(&"é".repeat(300), &[]).len(), 200);
    }
}
