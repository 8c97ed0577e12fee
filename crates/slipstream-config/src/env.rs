//! `${env:VAR}` substitution, as the OpenTelemetry Collector does it.

use crate::ConfigError;

/// Replaces `${env:NAME}` (and `${env:NAME:-default}`) with the variable's value; `$$` stands
/// for a literal `$`. Every reference to an unset variable without a default is an error.
pub fn substitute_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push('$');
            rest = after;
            continue;
        };
        let inner = &body[..end];
        rest = &body[end + 1..];
        let Some(spec) = inner.strip_prefix("env:") else {
            // Not ours (e.g. a literal in a string): keep it as written.
            out.push_str("${");
            out.push_str(inner);
            out.push('}');
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
            Some(v) => out.push_str(&v),
            None => errors.push(ConfigError::new(
                "",
                format!("`${{{inner}}}`: environment variable {name} is not set (give a default with ${{env:{name}:-value}})"),
            )),
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
