//! What the receiver's unit tests share: a pipeline in front of a downstream that records
//! what it is given (or refuses it, as a full queue does) and the self-metrics it keeps. The
//! requests they send are built by `slipstream-test-support`, re-exported here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use slipstream_core::{
    Backpressure, ForwardSink, ObservationSink, Registry, ScanSpec, Signal, SpanRecord,
};

pub(crate) use slipstream_test_support::otlp::{
    logs_with, nested_value as nested_body, traces, traces_of,
};

use crate::pipeline::{Limits, Pipeline, Transport};

/// A forward queue that records what it takes, or refuses everything while `full`.
#[derive(Debug, Default)]
pub(crate) struct Downstream {
    pub(crate) forwarded: Mutex<Vec<(Signal, Bytes)>>,
    /// The gzip members handed with bodies ([`ForwardSink::forward_gzipped`]), in order.
    pub(crate) gzipped: Mutex<Vec<Bytes>>,
    pub(crate) full: AtomicBool,
}

impl ForwardSink for Downstream {
    fn forward(&self, signal: Signal, body: Bytes) -> Result<(), Backpressure> {
        if self.full.load(Ordering::Relaxed) {
            return Err(Backpressure {
                retry_after: Duration::from_millis(1500),
            });
        }
        self.forwarded.lock().unwrap().push((signal, body));
        Ok(())
    }

    fn forward_gzipped(
        &self,
        signal: Signal,
        body: Bytes,
        gzip: Bytes,
    ) -> Result<(), Backpressure> {
        self.forward(signal, body)?;
        self.gzipped.lock().unwrap().push(gzip);
        Ok(())
    }
}

impl Downstream {
    /// The bodies taken so far.
    pub(crate) fn bodies(&self) -> Vec<Bytes> {
        let got = self.forwarded.lock().unwrap();
        got.iter().map(|(_, b)| b.clone()).collect()
    }
}

/// An aggregator stand-in that counts the spans it is handed.
#[derive(Debug, Default)]
pub(crate) struct Observed(pub(crate) std::sync::atomic::AtomicUsize);

impl ObservationSink for Observed {
    fn record(&self, spans: &[SpanRecord<'_>]) {
        self.0.fetch_add(spans.len(), Ordering::Relaxed);
    }
}

/// A pipeline, its registry, its downstream and its aggregator.
pub(crate) struct Harness {
    pub(crate) pipeline: Pipeline,
    pub(crate) registry: Registry,
    pub(crate) downstream: Arc<Downstream>,
    pub(crate) observed: Arc<Observed>,
}

/// A pipeline taking bodies up to 1 MiB decompressed, set up further by `setup`.
pub(crate) fn harness(setup: impl FnOnce(Pipeline) -> Pipeline) -> Harness {
    let registry = Registry::new();
    let downstream = Arc::new(Downstream::default());
    let observed = Arc::new(Observed::default());
    let limits = Limits {
        max_decompressed_size: 1 << 20,
        max_spans_per_request: 0,
        attributes: Default::default(),
    };
    let pipeline = setup(Pipeline::new(
        downstream.clone(),
        observed.clone(),
        ScanSpec::default(),
        limits,
        registry.clone(),
    ));
    Harness {
        pipeline,
        registry,
        downstream,
        observed,
    }
}

impl Harness {
    /// `slipstream_receiver_refused_requests_total` for this signal, transport and reason.
    pub(crate) fn refused(&self, signal: Signal, transport: Transport, reason: &str) -> i128 {
        self.registry
            .value(
                "slipstream_receiver_refused_requests_total",
                &[signal.as_str(), transport.as_str(), reason],
            )
            .unwrap_or(0)
    }

    /// `slipstream_receiver_requests_total` for this signal, transport and outcome.
    pub(crate) fn requests(&self, signal: Signal, transport: Transport, outcome: &str) -> i128 {
        self.registry
            .value(
                "slipstream_receiver_requests_total",
                &[signal.as_str(), transport.as_str(), outcome],
            )
            .unwrap_or(0)
    }

    /// A counter of the pipeline by name and label values (0 when never created).
    pub(crate) fn value(&self, name: &str, labels: &[&str]) -> i128 {
        self.registry.value(name, labels).unwrap_or(0)
    }
}

/// `data` gzip-compressed.
pub(crate) fn gzip(data: &[u8]) -> Bytes {
    Bytes::from(slipstream_test_support::gzip(data))
}
