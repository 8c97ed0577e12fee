//! gRPC status codes and the `google.rpc.Status` / `RetryInfo` messages that carry a retry
//! delay, shared by the receivers (which send them) and the exporters (which honour them).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use prost::Message;

/// gRPC status codes used by OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum GrpcCode {
    /// OK (0).
    Ok = 0,
    /// CANCELLED (1).
    Cancelled = 1,
    /// UNKNOWN (2).
    Unknown = 2,
    /// INVALID_ARGUMENT (3).
    InvalidArgument = 3,
    /// DEADLINE_EXCEEDED (4).
    DeadlineExceeded = 4,
    /// NOT_FOUND (5).
    NotFound = 5,
    /// PERMISSION_DENIED (7).
    PermissionDenied = 7,
    /// RESOURCE_EXHAUSTED (8).
    ResourceExhausted = 8,
    /// ABORTED (10).
    Aborted = 10,
    /// OUT_OF_RANGE (11).
    OutOfRange = 11,
    /// UNIMPLEMENTED (12).
    Unimplemented = 12,
    /// INTERNAL (13).
    Internal = 13,
    /// UNAVAILABLE (14).
    Unavailable = 14,
    /// DATA_LOSS (15).
    DataLoss = 15,
    /// UNAUTHENTICATED (16).
    Unauthenticated = 16,
}

/// Whether an exporter should retry after this gRPC status (OTLP spec, "Failures"):
/// CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS always;
/// RESOURCE_EXHAUSTED only when the server sent RetryInfo.
pub fn grpc_code_is_retryable(code: i32, has_retry_info: bool) -> bool {
    matches!(code, 1 | 4 | 10 | 11 | 14 | 15) || (code == 8 && has_retry_info)
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Details, such as RetryInfo.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    /// The type URL.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long to wait.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The type URL of RetryInfo inside `Status.details`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// A status without details.
    pub fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        RpcStatus {
            code: code as i32,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds a RetryInfo detail asking the client to wait `delay`.
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: delay.as_secs() as i64,
                nanos: delay.subsec_nanos() as i32,
            }),
        };
        self.details.push(ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_owned(),
            value: info.encode_to_vec(),
        });
        self
    }

    /// The delay of the first RetryInfo detail, if there is one.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|d| d.type_url == RETRY_INFO_TYPE_URL)
            .find_map(|d| {
                let info = RetryInfo::decode(&d.value[..]).ok()?;
                let p = info.retry_delay?;
                let secs = u64::try_from(p.seconds).ok()?;
                let nanos = u32::try_from(p.nanos).ok()?;
                Some(Duration::new(secs, nanos.min(999_999_999)))
            })
    }
}

/// Standard base64 as gRPC's `-bin` metadata uses it: written without padding, read with or
/// without it (peers send either), extra bits in the last character ignored.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 without padding, as gRPC's `-bin` metadata is sent.
pub fn base64_encode(data: &[u8]) -> String {
    BASE64.encode(data)
}

/// Decodes standard base64, padded or not (gRPC peers send either); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}
