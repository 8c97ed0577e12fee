//! The forward stage's counters, resolved once when a lane starts: delivering, retrying,
//! dropping or spilling a request is an index and an atomic add, with no registry lookup.

use slipstream_core::telemetry::{ByLabel, LabelValue, names};
use slipstream_core::{Registry, Signal};

use crate::failure::FailureReason;

/// The `signal` label of the forward counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignalLabel(pub(crate) Signal);

impl LabelValue for SignalLabel {
    const COUNT: usize = Signal::ALL.len();

    fn as_str(self) -> &'static str {
        self.0.as_str()
    }

    fn index(self) -> usize {
        signal_index(self.0)
    }
}

/// `signal`'s place in [`Signal::ALL`].
fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

/// One `T` per signal, in the order of [`Signal::ALL`].
#[derive(Debug)]
pub(crate) struct PerSignal<T>([T; Signal::ALL.len()]);

impl<T> PerSignal<T> {
    /// `make(signal)` for every signal.
    pub(crate) fn new(make: impl FnMut(Signal) -> T) -> Self {
        PerSignal(Signal::ALL.map(make))
    }

    /// The one of `signal`.
    pub(crate) fn get(&self, signal: Signal) -> &T {
        &self.0[signal_index(signal)]
    }
}

/// Why an accepted request was never delivered: the `reason` of
/// `slipstream_forward_dropped_requests_total` that the forward exporter and its spill count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForwardDrop {
    /// The downstream refused it for good (`rejected_downstream`).
    RejectedDownstream,
    /// `retry.max_elapsed_time` passed (`retries_exhausted`).
    RetriesExhausted,
    /// Still in memory at the drain deadline, without a spill to keep it (`shutdown`).
    Shutdown,
    /// Lost in a damaged spill segment (`spill_corrupt`).
    SpillCorrupt,
}

impl LabelValue for ForwardDrop {
    const COUNT: usize = 4;

    fn as_str(self) -> &'static str {
        match self {
            ForwardDrop::RejectedDownstream => "rejected_downstream",
            ForwardDrop::RetriesExhausted => "retries_exhausted",
            ForwardDrop::Shutdown => "shutdown",
            ForwardDrop::SpillCorrupt => "spill_corrupt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a request went to the disk spill: the `reason` of
/// `slipstream_forward_spilled_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpillReason {
    /// The memory queue had no room (`queue_full`).
    QueueFull,
    /// Left in memory at the drain deadline (`shutdown`).
    Shutdown,
}

impl LabelValue for SpillReason {
    const COUNT: usize = 2;

    fn as_str(self) -> &'static str {
        match self {
            SpillReason::QueueFull => "queue_full",
            SpillReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the forward exporter of one lane counts.
#[derive(Debug)]
pub(crate) struct ForwardCounters {
    sent_requests: ByLabel<SignalLabel>,
    sent_bytes: ByLabel<SignalLabel>,
    retries: PerSignal<ByLabel<FailureReason>>,
    dropped: PerSignal<ByLabel<ForwardDrop>>,
}

impl ForwardCounters {
    /// The counters in `registry` (each appears there when first used).
    pub(crate) fn new(registry: &Registry) -> Self {
        ForwardCounters {
            sent_requests: ByLabel::new(registry, &names::FORWARDED_ITEMS, &[]),
            sent_bytes: ByLabel::new(registry, &names::FORWARDED_BYTES, &[]),
            retries: PerSignal::new(|s| {
                ByLabel::new(registry, &names::FORWARD_RETRIES, &[s.as_str()])
            }),
            dropped: PerSignal::new(|s| {
                ByLabel::new(registry, &names::DROPPED_REQUESTS, &[s.as_str()])
            }),
        }
    }

    /// One request of `bytes` (before compression) delivered.
    pub(crate) fn delivered(&self, signal: Signal, bytes: usize) {
        self.sent_requests.inc(SignalLabel(signal));
        self.sent_bytes.add(SignalLabel(signal), bytes as u64);
    }

    /// One failed attempt that will be retried.
    pub(crate) fn retried(&self, signal: Signal, reason: FailureReason) {
        self.retries.get(signal).inc(reason);
    }

    /// One request dropped.
    pub(crate) fn dropped(&self, signal: Signal, reason: ForwardDrop) {
        self.dropped.get(signal).inc(reason);
    }
}

#[cfg(test)]
mod tests;
