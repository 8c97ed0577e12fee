//! Good or bad: the outcome rules of the SLO semantics.

use crate::{SpanKind, SpanRecord, StatusCode};

/// Whether a request counts against the error budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The request succeeded.
    Good,
    /// The request failed.
    Bad,
}

/// A set of gRPC status codes (0..=16) that count as bad, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcBadCodes(u32);

impl GrpcBadCodes {
    /// UNKNOWN(2), DEADLINE_EXCEEDED(4), UNIMPLEMENTED(12), INTERNAL(13), UNAVAILABLE(14),
    /// DATA_LOSS(15): the server-side failures.
    pub const DEFAULT: GrpcBadCodes =
        GrpcBadCodes((1 << 2) | (1 << 4) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15));

    /// Builds the set from codes; codes outside 0..=16 are ignored.
    pub fn from_codes(codes: impl IntoIterator<Item = i64>) -> Self {
        let mut bits = 0u32;
        for c in codes {
            if (0..=16).contains(&c) {
                bits |= 1 << c;
            }
        }
        GrpcBadCodes(bits)
    }

    /// Whether `code` is in the set.
    pub fn contains(self, code: i64) -> bool {
        (0..=16).contains(&code) && self.0 & (1 << code) != 0
    }
}

impl Default for GrpcBadCodes {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The rules that turn a span into an [`Outcome`] (DESIGN.md, "SLO semantics").
///
/// A span is bad when its status is ERROR, or when it is a server span whose HTTP status code
/// falls in `http_bad_min..=http_bad_max` (default 5xx), or when its gRPC status code is in
/// `grpc_bad_codes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeRules {
    /// Span status ERROR makes a span bad.
    pub status_error_is_bad: bool,
    /// Lowest HTTP status code that is bad on a server span.
    pub http_bad_min: i64,
    /// Highest HTTP status code that is bad on a server span.
    pub http_bad_max: i64,
    /// Also apply the HTTP rule to client spans (off by default: a client's 5xx is the callee's
    /// failure, which the callee's own server span records).
    pub http_rule_on_client_spans: bool,
    /// gRPC codes that make a span bad.
    pub grpc_bad_codes: GrpcBadCodes,
}

impl Default for OutcomeRules {
    fn default() -> Self {
        OutcomeRules {
            status_error_is_bad: true,
            http_bad_min: 500,
            http_bad_max: 599,
            http_rule_on_client_spans: false,
            grpc_bad_codes: GrpcBadCodes::DEFAULT,
        }
    }
}

impl OutcomeRules {
    /// Classifies one span.
    #[inline]
    pub fn classify(&self, span: &SpanRecord<'_>) -> Outcome {
        if self.status_error_is_bad && span.status == StatusCode::Error {
            return Outcome::Bad;
        }
        if let Some(code) = span.http_status_code {
            let applies = span.kind == SpanKind::Server
                || (self.http_rule_on_client_spans && span.kind == SpanKind::Client);
            if applies && (self.http_bad_min..=self.http_bad_max).contains(&code) {
                return Outcome::Bad;
            }
        }
        if let Some(code) = span.rpc_grpc_status_code
            && self.grpc_bad_codes.contains(code)
        {
            return Outcome::Bad;
        }
        Outcome::Good
    }
}
