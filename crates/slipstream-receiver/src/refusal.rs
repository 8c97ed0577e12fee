//! Why a request was refused: the `reason` label of
//! `slipstream_receiver_refused_requests_total` and
//! `slipstream_receiver_aggregates_refused_total`, as a closed set, so that every refusal
//! counter is an array slot ([`ByLabel`]) rather than a registry lookup under its lock: under
//! overload every request is refused, and the refusal path must cost no more than the answer.

use slipstream_core::MergeError;
use slipstream_core::telemetry::{ByLabel, LabelValue};

/// The refusal counters of one (signal, transport) or of the partial-aggregates path.
pub(crate) type RefusalCounters = ByLabel<Refusal>;

/// A refusal reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a POST.
    MethodNotAllowed,
    /// No accepted bearer token.
    Unauthenticated,
    /// A content type the path does not take.
    UnsupportedMediaType,
    /// A content encoding the receivers do not take.
    UnsupportedEncoding,
    /// The body does not decode.
    Invalid,
    /// The body is over a size limit.
    TooLarge,
    /// A span or resource breaks an attribute limit.
    AttributeLimit,
    /// Ids of the wrong length, which a downstream refuses.
    InvalidId,
    /// Values nested past the walk's cap.
    NestingLimit,
    /// The forward queue is full.
    QueueFull,
    /// slipstream is over its memory limit.
    MemoryLimit,
    /// Partial aggregates are not taken here.
    Disabled,
    /// A partial-aggregates sender not among the configured ones.
    UnknownSender,
    /// Partial aggregates claiming more than one sender could have seen.
    Implausible,
    /// Partial aggregates of another slot width, histogram layout or dimensions.
    Incompatible,
    /// The aggregator's merge queue is full.
    Busy,
}

impl Refusal {
    /// The reason of a refused partial-aggregates merge.
    pub(crate) fn of_merge(e: &MergeError) -> Refusal {
        match e {
            MergeError::Incompatible(_) => Refusal::Incompatible,
            MergeError::Invalid(_) => Refusal::Invalid,
            MergeError::Implausible(_) => Refusal::Implausible,
            MergeError::Busy(_) => Refusal::Busy,
        }
    }
}

impl LabelValue for Refusal {
    const COUNT: usize = Refusal::Busy as usize + 1;

    fn as_str(self) -> &'static str {
        match self {
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::UnsupportedEncoding => "unsupported_encoding",
            Refusal::Invalid => "invalid",
            Refusal::TooLarge => "too_large",
            Refusal::AttributeLimit => "attribute_limit",
            Refusal::InvalidId => "invalid_id",
            Refusal::NestingLimit => "nesting_limit",
            Refusal::QueueFull => "queue_full",
            Refusal::MemoryLimit => "memory_limit",
            Refusal::Disabled => "disabled",
            Refusal::UnknownSender => "unknown_sender",
            Refusal::Implausible => "implausible",
            Refusal::Incompatible => "incompatible",
            Refusal::Busy => "busy",
        }
    }

    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests;
