use std::collections::BTreeSet;
use std::time::Duration;

use slipstream_core::MergeError;
use slipstream_core::telemetry::LabelValue;

use super::Refusal;
use crate::pipeline::ExportError;

const ALL: [Refusal; Refusal::COUNT] = [
    Refusal::MethodNotAllowed,
    Refusal::Unauthenticated,
    Refusal::UnsupportedMediaType,
    Refusal::UnsupportedEncoding,
    Refusal::Invalid,
    Refusal::TooLarge,
    Refusal::AttributeLimit,
    Refusal::InvalidId,
    Refusal::NestingLimit,
    Refusal::QueueFull,
    Refusal::MemoryLimit,
    Refusal::Disabled,
    Refusal::UnknownSender,
    Refusal::Implausible,
    Refusal::Incompatible,
    Refusal::Busy,
];

#[test]
fn every_reason_has_its_own_slot_and_label() {
    let slots: BTreeSet<usize> = ALL.iter().map(|r| r.index()).collect();
    assert_eq!(slots, (0..Refusal::COUNT).collect());
    let labels: BTreeSet<&str> = ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), Refusal::COUNT);
}

#[test]
fn export_errors_count_under_their_own_reason() {
    let errors = [
        ExportError::Invalid("x".into()),
        ExportError::TooLarge("x".into()),
        ExportError::AttributeLimit("x".into()),
        ExportError::Unforwardable {
            reason: "invalid_id",
            message: "x".into(),
        },
        ExportError::Unforwardable {
            reason: "nesting_limit",
            message: "x".into(),
        },
        ExportError::Backpressure(Duration::from_secs(1)),
        ExportError::MemoryLimit(Duration::from_secs(1)),
    ];
    for e in errors {
        assert_eq!(e.refusal().as_str(), e.reason(), "{e:?}");
    }
}

#[test]
fn merge_errors_count_under_their_own_reason() {
    let errors = [
        MergeError::Incompatible("x".into()),
        MergeError::Invalid("x".into()),
        MergeError::Implausible("x".into()),
        MergeError::Busy(Duration::from_secs(1)),
    ];
    for e in errors {
        assert_eq!(Refusal::of_merge(&e).as_str(), e.reason(), "{e:?}");
    }
}
