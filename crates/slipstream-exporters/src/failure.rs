//! Why one delivery attempt failed, and which answers are worth another attempt.
//!
//! Every exporter reports a failed attempt as a [`SendError`]: the [`FailureReason`] it is
//! counted under, whether to try again (and after how long the target asked to wait), and a
//! detail for the log. [`classify`] turns an HTTP status into success or a [`SendError`] under
//! a [`RetryPolicy`]; [`grpc_status`] does the same for a gRPC status.

use std::time::Duration;

use http::StatusCode;
use slipstream_core::rpc::grpc_code_is_retryable;
use slipstream_core::telemetry::LabelValue;

/// Which HTTP statuses are worth another attempt. The two policies differ on purpose; which
/// one an exporter uses is part of its documented behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// The OTLP specification's rule ("Failures" in the OTLP/HTTP section), for every OTLP
    /// exporter (forward, OTLP metrics, OTLP logs): 429, 502, 503 and 504 are retryable, every
    /// other status is permanent. An OTLP receiver answering 500 says the request itself is
    /// at fault, and sending it again would only repeat that.
    Otlp,
    /// Plain HTTP push targets (Alertmanager, webhook, remote write, partial aggregates):
    /// 429 and every 5xx are retryable, as Prometheus retries its remote write and alerts;
    /// other statuses (3xx, 4xx) are permanent.
    Http,
}

/// The `reason` label value of a failed attempt
/// (`slipstream_exporter_failures_total`, `slipstream_forward_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No connection, or it broke before an answer (`unreachable`).
    Unreachable,
    /// No whole answer within the timeout (`timeout`).
    Timeout,
    /// An HTTP status other than success (`http_status`).
    HttpStatus,
    /// A gRPC status other than OK (`grpc_status`).
    GrpcStatus,
    /// The request could not even be built (`invalid`).
    Invalid,
}

impl LabelValue for FailureReason {
    const COUNT: usize = 5;

    fn as_str(self) -> &'static str {
        match self {
            FailureReason::Unreachable => "unreachable",
            FailureReason::Timeout => "timeout",
            FailureReason::HttpStatus => "http_status",
            FailureReason::GrpcStatus => "grpc_status",
            FailureReason::Invalid => "invalid",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Whether a failed attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Yes (a connection error, a timeout, a status the [`RetryPolicy`] retries), after at
    /// least the delay the target asked for, when it asked (honoured when longer than the
    /// backoff).
    After(Option<Duration>),
    /// No: the target refused the item for good, and it is dropped.
    Never,
}

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// What the failure is counted as.
    pub reason: FailureReason,
    /// Whether another attempt is worth it.
    pub retry: Retry,
    /// What happened, for the log (`HTTP 400 Bad Request`, `grpc-status 3: ...`).
    pub detail: String,
}

impl SendError {
    /// A failure worth another attempt, after at least `after` when the target asked.
    pub fn retryable(
        reason: FailureReason,
        after: Option<Duration>,
        detail: impl Into<String>,
    ) -> Self {
        SendError {
            reason,
            retry: Retry::After(after),
            detail: detail.into(),
        }
    }

    /// A failure that no other attempt would fix.
    pub fn permanent(reason: FailureReason, detail: impl Into<String>) -> Self {
        SendError {
            reason,
            retry: Retry::Never,
            detail: detail.into(),
        }
    }

    /// No answer within `timeout`.
    pub fn timeout(timeout: Duration) -> Self {
        SendError::retryable(
            FailureReason::Timeout,
            None,
            format!("no answer within {timeout:?}"),
        )
    }

    /// No connection, or it broke: `e` says how.
    pub fn unreachable(e: impl std::fmt::Display) -> Self {
        SendError::retryable(FailureReason::Unreachable, None, e.to_string())
    }

    /// Whether another attempt is worth it.
    pub fn is_retryable(&self) -> bool {
        matches!(self.retry, Retry::After(_))
    }

    /// The delay the target asked for before another attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.retry {
            Retry::After(after) => after,
            Retry::Never => None,
        }
    }
}

/// Success, or a [`SendError`] (`http_status`) retryable as `policy` says, from an HTTP
/// answer's status and its `Retry-After` (in seconds).
pub fn classify(
    policy: RetryPolicy,
    status: StatusCode,
    retry_after: Option<Duration>,
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let retryable = match policy {
        RetryPolicy::Otlp => matches!(status.as_u16(), 429 | 502 | 503 | 504),
        RetryPolicy::Http => status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
    };
    let detail = format!("HTTP {status}");
    Err(if retryable {
        SendError::retryable(FailureReason::HttpStatus, retry_after, detail)
    } else {
        SendError::permanent(FailureReason::HttpStatus, detail)
    })
}

/// Success, or a [`SendError`] (`grpc_status`), from a gRPC status `code` with its message
/// and the RetryInfo delay it carried: retryable as the OTLP specification says
/// ([`grpc_code_is_retryable`]).
pub fn grpc_status(code: i32, message: &str, delay: Option<Duration>) -> Result<(), SendError> {
    if code == 0 {
        return Ok(());
    }
    let detail = format!("grpc-status {code}: {message}");
    Err(if grpc_code_is_retryable(code, delay.is_some()) {
        SendError::retryable(FailureReason::GrpcStatus, delay, detail)
    } else {
        SendError::permanent(FailureReason::GrpcStatus, detail)
    })
}

#[cfg(test)]
mod tests;
