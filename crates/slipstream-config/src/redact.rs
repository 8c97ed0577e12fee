//! Keeping secrets out of what slipstream prints: `validate --print` and the logs.
//!
//! What counts as a secret: the value of any field whose name looks like a credential
//! (`bearer_tokens`, `secret`, `password`, `authorization`, `cookie`, `*token*`, `*key*`, but
//! not a `*_file` path to one), the value of a header whose name looks like one, and the
//! userinfo of a URL (`https://user:pass@host` shows as `https://<redacted>@host`).

use std::borrow::Cow;

use serde_yaml::Value;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Whether a field or header named `name` holds a credential.
pub fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with("_file") || n.ends_with("_path") || n.ends_with("_dir") {
        return false;
    }
    [
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "cookie",
        "key",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `s` with the userinfo of every URL in it (`scheme://user:pass@host`) replaced by
/// [`REDACTED`]; borrowed when there is none.
pub fn redact_urls(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | ',' | ']' | '}' | ')' | '>' | '<'
                ) || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    if !changed {
        return Cow::Borrowed(s);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Redacts the secrets of a document's value tree in place; `key` is the name of the field
/// that holds `v`.
pub(crate) fn redact_tree(v: &mut Value, key: Option<&str>) {
    let secret = key.is_some_and(is_credential_name);
    match v {
        Value::String(s) => {
            if secret {
                *s = REDACTED.to_owned();
            } else if let Cow::Owned(r) = redact_urls(s) {
                *s = r;
            }
        }
        Value::Number(_) | Value::Bool(_) if secret => *v = Value::String(REDACTED.to_owned()),
        Value::Sequence(items) => {
            for item in items {
                redact_tree(item, key);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                redact_tree(item, k.as_str());
            }
        }
        Value::Tagged(t) => redact_tree(&mut t.value, key),
        _ => {}
    }
}
