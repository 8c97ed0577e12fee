use std::time::Duration;

use http::StatusCode;

use super::*;

fn verdict(policy: RetryPolicy, status: u16) -> Option<Retry> {
    let after = Some(Duration::from_secs(2));
    classify(policy, StatusCode::from_u16(status).unwrap(), after)
        .err()
        .map(|e| {
            assert_eq!(e.reason, FailureReason::HttpStatus);
            e.retry
        })
}

#[test]
fn otlp_retries_only_the_statuses_the_spec_names() {
    let after = Retry::After(Some(Duration::from_secs(2)));
    for status in [200, 202, 204] {
        assert_eq!(verdict(RetryPolicy::Otlp, status), None, "{status}");
    }
    for status in [429, 502, 503, 504] {
        assert_eq!(verdict(RetryPolicy::Otlp, status), Some(after), "{status}");
    }
    for status in [301, 400, 401, 404, 413, 500, 501, 505] {
        assert_eq!(
            verdict(RetryPolicy::Otlp, status),
            Some(Retry::Never),
            "{status}"
        );
    }
}

#[test]
fn http_targets_retry_429_and_every_5xx() {
    let after = Retry::After(Some(Duration::from_secs(2)));
    for status in [200, 204] {
        assert_eq!(verdict(RetryPolicy::Http, status), None, "{status}");
    }
    for status in [429, 500, 501, 502, 503, 504, 505] {
        assert_eq!(verdict(RetryPolicy::Http, status), Some(after), "{status}");
    }
    for status in [301, 400, 401, 404, 413] {
        assert_eq!(
            verdict(RetryPolicy::Http, status),
            Some(Retry::Never),
            "{status}"
        );
    }
}

#[test]
fn grpc_statuses_follow_the_otlp_spec() {
    assert_eq!(grpc_status(0, "", None), Ok(()));
    let unavailable = grpc_status(14, "busy", None).unwrap_err();
    assert_eq!(unavailable.reason, FailureReason::GrpcStatus);
    assert_eq!(unavailable.retry, Retry::After(None));
    assert_eq!(unavailable.detail, "grpc-status 14: busy");
    let delay = Some(Duration::from_millis(1500));
    assert_eq!(
        grpc_status(8, "full", delay).unwrap_err().retry,
        Retry::After(delay),
        "RESOURCE_EXHAUSTED with RetryInfo"
    );
    assert_eq!(
        grpc_status(8, "full", None).unwrap_err().retry,
        Retry::Never,
        "RESOURCE_EXHAUSTED without RetryInfo"
    );
    assert_eq!(
        grpc_status(3, "bad", delay).unwrap_err().retry,
        Retry::Never
    );
}

#[test]
fn reasons_keep_their_label_values() {
    let all = [
        FailureReason::Unreachable,
        FailureReason::Timeout,
        FailureReason::HttpStatus,
        FailureReason::GrpcStatus,
        FailureReason::Invalid,
    ];
    assert_eq!(all.len(), FailureReason::COUNT);
    let labels: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "unreachable",
            "timeout",
            "http_status",
            "grpc_status",
            "invalid"
        ]
    );
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}
