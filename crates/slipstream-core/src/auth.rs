//! Bearer-token checks shared by every server that takes tokens (the OTLP receivers, the
//! partial-aggregates path, the admin API's writes).

/// Whether an `Authorization` header value (`Bearer <token>`, the scheme in any case) carries
/// one of `tokens`. Every token is compared in full, whichever matches, so the time taken
/// tells nothing about them.
pub fn bearer_accepted<T: AsRef<[u8]>>(authorization: Option<&[u8]>, tokens: &[T]) -> bool {
    let Some(given) = authorization.and_then(|v| {
        let (scheme, rest) = v.split_at(v.len().min(7));
        scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
    }) else {
        return false;
    };
    tokens
        .iter()
        .fold(false, |ok, t| ok | constant_time_eq(t.as_ref(), given))
}

/// Equality of two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_accepted;

    #[test]
    fn only_a_listed_bearer_token_is_accepted() {
        let tokens = [b"s3cret".to_vec(), b"other".to_vec()];
        assert!(bearer_accepted(Some(b"Bearer s3cret"), &tokens));
        assert!(bearer_accepted(Some(b"bearer other"), &tokens));
        assert!(!bearer_accepted(Some(b"Bearer s3cre"), &tokens));
        assert!(!bearer_accepted(Some(b"Bearer s3cret "), &tokens));
        assert!(!bearer_accepted(Some(b"Basic s3cret"), &tokens));
        assert!(!bearer_accepted(Some(b"s3cret"), &tokens));
        assert!(!bearer_accepted(None, &tokens));
        assert!(!bearer_accepted(Some(b"Bearer s3cret"), &[] as &[Vec<u8>]));
    }
}
