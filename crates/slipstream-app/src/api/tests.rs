use http::HeaderMap;

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, http::HeaderValue::from_static(v));
    }
    h
}

#[test]
fn only_an_origin_of_this_server_is_same_origin() {
    let host = Some("127.0.0.1:8888");
    for (origin, authority, cross) in [
        ("http://127.0.0.1:8888", host, false),
        ("http://127.0.0.1:8888/", host, false),
        ("HTTP://LOCALHOST:8888", Some("localhost:8888"), false),
        (
            "http://slipstream.observability.svc",
            Some("slipstream.observability.svc:80"),
            false,
        ),
        ("http://[::1]:8888", Some("[::1]:8888"), false),
        ("http://127.0.0.1:8889", host, true),
        ("http://127.0.0.1", host, true),
        ("https://127.0.0.1:8888", Some("127.0.0.1"), true),
        ("http://evil.example:8888", host, true),
        ("http://127.0.0.1.evil.example:8888", host, true),
        ("http://user@127.0.0.1:8888", host, true),
        ("null", host, true),
        ("file://", host, true),
        ("http://127.0.0.1:8888", None, true),
    ] {
        let h = headers(&[("origin", origin)]);
        assert_eq!(
            is_cross_origin(&h, authority),
            cross,
            "{origin} to {authority:?}"
        );
    }
    // No Origin (curl, the CLI): not a browser's cross-origin request.
    assert!(!is_cross_origin(&HeaderMap::new(), host));
    assert!(is_cross_origin(
        &headers(&[("sec-fetch-site", "cross-site")]),
        host
    ));
    assert!(!is_cross_origin(
        &headers(&[("sec-fetch-site", "same-origin")]),
        host
    ));
}

#[test]
fn bearer_tokens_match_in_full_only() {
    let tokens = token_bytes(vec!["abc".into(), "longer-token".into()]);
    let with = |v: &'static str| headers(&[("authorization", v)]);
    assert!(bearer_accepted(&with("Bearer abc"), &tokens));
    assert!(bearer_accepted(&with("bearer longer-token"), &tokens));
    for refused in [
        "Bearer ab",
        "Bearer abcd",
        "Bearer  abc",
        "Basic abc",
        "abc",
        "Bearer",
    ] {
        assert!(!bearer_accepted(&with(refused), &tokens), "{refused}");
    }
    assert!(!bearer_accepted(&HeaderMap::new(), &tokens));
}

#[test]
fn a_silence_without_an_end_gets_one_and_a_later_end_is_refused() {
    let limits = SilenceLimitsConfig::default();
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut open = SilenceConfig {
        service: Some("cart".into()),
        ..serde_json::from_str("{}").unwrap()
    };
    assert!(limit_silence(&mut open, &limits, now).is_empty());
    assert_eq!(open.ends_at, Some(now + limits.max_duration));
    let mut too_long = SilenceConfig {
        ends_at: Some(now + limits.max_duration + Duration::from_secs(1)),
        ..open.clone()
    };
    assert_eq!(limit_silence(&mut too_long, &limits, now).len(), 1);
}

#[test]
fn without_a_token_a_browser_writes_only_to_an_address() {
    let registry = Registry::new();
    let clock: Arc<dyn Clock> = Arc::new(slipstream_core::ManualClock::new(0));
    let open = Access::new(&AdminConfig::default(), clock.clone(), &registry).unwrap();
    let json = ("content-type", "application/json");
    // A rebound name: same origin, but not an address.
    let rebound = headers(&[json, ("origin", "http://evil.example:8888")]);
    assert_eq!(
        open.check_write(&rebound, Some("evil.example:8888")),
        Err(Refusal::CrossOrigin)
    );
    for (origin, authority) in [
        ("http://127.0.0.1:8888", "127.0.0.1:8888"),
        ("http://localhost:8888", "localhost:8888"),
        ("http://[::1]:8888", "[::1]:8888"),
    ] {
        let h = headers(&[json, ("origin", origin)]);
        assert_eq!(open.check_write(&h, Some(authority)), Ok(()), "{origin}");
    }
    // curl and scripts send no Origin: any name works.
    assert_eq!(
        open.check_write(&headers(&[json]), Some("slipstream.observability.svc:8888")),
        Ok(())
    );
    // With a token the name does not matter: a rebinding page has no token.
    let cfg = AdminConfig {
        auth: Some(slipstream_config::receiver::AuthConfig {
            bearer_tokens: vec!["t".into()],
            bearer_tokens_file: None,
        }),
        ..AdminConfig::default()
    };
    let guarded = Access::new(&cfg, clock, &registry).unwrap();
    let h = headers(&[
        json,
        ("origin", "http://slipstream.example:8888"),
        ("authorization", "Bearer t"),
    ]);
    assert_eq!(
        guarded.check_write(&h, Some("slipstream.example:8888")),
        Ok(())
    );
}
