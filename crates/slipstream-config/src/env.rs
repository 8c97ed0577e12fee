//! `${env:VAR}` substitution, as the OpenTelemetry Collector does it, with one difference that
//! matters for safety: a variable's value is always one scalar value. It can never add keys,
//! list items or documents, whatever characters it holds (a newline, `]`, `: `, quotes).
//!
//! [`substitute_values`] does this: every reference is first replaced by a placeholder made of
//! digits (which changes no structure wherever it stands), the document is parsed into a YAML
//! value tree, and then each placeholder is replaced by its value inside the scalar that holds
//! it. A reference that is a whole unquoted scalar (`concurrency: ${env:N}`, `endpoint:
//! ${env:X:-null}`) takes the value's scalar type (null, boolean, number, else string), as it
//! would have had written in the file; one inside a quoted or longer scalar stays a string.

use serde_yaml::Value;

use crate::ConfigError;

/// A piece of the document after its references were resolved.
enum Segment<'a> {
    /// Text of the document, as written (`$$` already turned into `$`).
    Text(&'a str),
    /// The value of one reference.
    Value(String),
}

/// Splits `text` into text and resolved references; every reference to an unset variable
/// without a default, and every malformed name, is an error.
fn resolve<'a>(
    text: &'a str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Segment<'a>>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push(Segment::Text(&rest[..i]));
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push(Segment::Text("$"));
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push(Segment::Text("$"));
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push(Segment::Text("$"));
            rest = after;
            continue;
        };
        let inner = &body[..end];
        let whole = &rest[i..i + 2 + end + 1];
        rest = &body[end + 1..];
        let Some(spec) = inner.strip_prefix("env:") else {
            // Not ours (e.g. a literal in a string): keep it as written.
            out.push(Segment::Text(whole));
            continue;
        };
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            errors.push(ConfigError::new(
                "",
                format!("`${{{inner}}}`: `{name}` is not an environment variable name"),
            ));
            continue;
        }
        match lookup(name).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push(Segment::Value(v)),
            None => errors.push(ConfigError::new(
                "",
                format!("`${{{inner}}}`: environment variable {name} is not set (give a default with ${{env:{name}:-value}})"),
            )),
        }
    }
    out.push(Segment::Text(rest));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Replaces `${env:NAME}` (and `${env:NAME:-default}`) with the variable's value in the text;
/// `$$` stands for a literal `$`. Every reference to an unset variable without a default is an
/// error. This is plain text substitution: to load a document, [`substitute_values`] keeps the
/// values from changing its structure.
pub fn substitute_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    for s in resolve(text, lookup)? {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Value(v) => out.push_str(&v),
        }
    }
    Ok(out)
}

/// The document with its references resolved, in one of two forms: when it holds no
/// reference, its text (with `$$` turned into `$`), to parse as it is; otherwise the text with
/// a placeholder for each reference, and the values to put back with [`fill`] once parsed.
pub(crate) enum Resolved {
    /// No reference: the text as it is to be parsed.
    Plain(String),
    /// Text with placeholders, and what to put back.
    WithValues(String, Placeholders),
}

/// The placeholders of a document and the values they stand for.
#[derive(Debug)]
pub(crate) struct Placeholders {
    prefix: String,
    values: Vec<String>,
}

/// Digits that mark a placeholder; `PLACEHOLDER_INDEX_DIGITS` more digits give its index.
const PLACEHOLDER_INDEX_DIGITS: usize = 6;

/// Resolves the references of `text` (see the module documentation).
pub(crate) fn substitute_values(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, Vec<ConfigError>> {
    let segments = resolve(text, lookup)?;
    let n = segments
        .iter()
        .filter(|s| matches!(s, Segment::Value(_)))
        .count();
    let mut out = String::with_capacity(text.len());
    if n == 0 {
        for s in &segments {
            if let Segment::Text(t) = s {
                out.push_str(t);
            }
        }
        return Ok(Resolved::Plain(out));
    }
    if n >= 10usize.pow(PLACEHOLDER_INDEX_DIGITS as u32) {
        return Err(vec![ConfigError::new(
            "",
            "too many ${env:...} references in one document",
        )]);
    }
    // A prefix that the document does not hold anywhere, so every occurrence is ours.
    let prefix = (0u64..)
        .map(|k| format!("{}", 7_305_186_429u64 + k * 1_000_003))
        .find(|p| !text.contains(p.as_str()))
        .expect("some prefix is free");
    let mut values = Vec::with_capacity(n);
    for s in segments {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Value(v) => {
                out.push_str(&format!(
                    "{prefix}{:0width$}",
                    values.len(),
                    width = PLACEHOLDER_INDEX_DIGITS
                ));
                values.push(v);
            }
        }
    }
    Ok(Resolved::WithValues(out, Placeholders { prefix, values }))
}

/// Puts the values back into the parsed tree: each only ever inside the scalar that held its
/// placeholder.
pub(crate) fn fill(value: Value, p: &Placeholders) -> Value {
    match value {
        Value::String(s) if s.contains(&p.prefix) => {
            // A quoted scalar, or a longer one: a string, whatever the value reads as.
            Value::String(p.replace(&s))
        }
        Value::Number(n) => {
            let s = n.to_string();
            if let Some(v) = p.whole(&s) {
                typed(v)
            } else if s.contains(&p.prefix) {
                typed(&p.replace(&s))
            } else {
                Value::Number(n)
            }
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(|v| fill(v, p)).collect()),
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .map(|(k, v)| (fill(k, p), fill(v, p)))
                .collect(),
        ),
        Value::Tagged(mut t) => {
            t.value = fill(std::mem::replace(&mut t.value, Value::Null), p);
            Value::Tagged(t)
        }
        other => other,
    }
}

impl Placeholders {
    /// The value when `s` is exactly one placeholder.
    fn whole(&self, s: &str) -> Option<&str> {
        let digits = s.strip_prefix(self.prefix.as_str())?;
        if digits.len() != PLACEHOLDER_INDEX_DIGITS {
            return None;
        }
        self.values
            .get(digits.parse::<usize>().ok()?)
            .map(String::as_str)
    }

    /// `s` with every placeholder replaced by its value.
    fn replace(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(self.prefix.as_str()) {
            out.push_str(&rest[..i]);
            let after = &rest[i + self.prefix.len()..];
            let value = after
                .get(..PLACEHOLDER_INDEX_DIGITS)
                .and_then(|d| d.parse::<usize>().ok())
                .and_then(|i| self.values.get(i));
            match value {
                Some(v) => {
                    out.push_str(v);
                    rest = &after[PLACEHOLDER_INDEX_DIGITS..];
                }
                None => {
                    out.push_str(&self.prefix);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// The scalar a value would be had it been written unquoted in the file: null, a boolean or a
/// number when it reads as one, else the string itself, verbatim (never a mapping, a list, or
/// a string cut at a `#`).
fn typed(v: &str) -> Value {
    if matches!(v.trim(), "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if !v.contains(['#', '\n', '\r'])
        && let Ok(t @ (Value::Bool(_) | Value::Number(_))) = serde_yaml::from_str::<Value>(v)
    {
        return t;
    }
    Value::String(v.to_owned())
}
