//! The byte-bounded queue between the receivers and the forwarder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use slipstream_core::telemetry::{Gauge, names};
use slipstream_core::{Backpressure, ForwardSink, Registry, Signal};
use tokio::sync::mpsc;

use super::counters::SpillReason;
use super::spill::{AppendError, RecordAt, Spill};

/// One request waiting to be forwarded.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) signal: Signal,
    pub(crate) body: Bytes,
    /// The gzip member `body` arrived as, when the receiver kept it: sent as is when the
    /// export is gzip, instead of compressing `body` again.
    pub(crate) gzip: Option<Bytes>,
    /// Where it waits: in memory, or in the disk spill (acknowledged there once done).
    pub(crate) spilled: Option<RecordAt>,
}

/// A queue of requests bounded by their total size. Pushing is lock-free: an atomic byte count
/// and an unbounded channel whose length that count bounds. With a disk spill, what does not
/// fit in memory is appended to the spill instead of being refused.
#[derive(Debug)]
pub struct ForwardQueue {
    spill: Option<Arc<Spill>>,
    tx: mpsc::UnboundedSender<Item>,
    bytes: AtomicUsize,
    requests: AtomicUsize,
    per_signal: [AtomicUsize; 3],
    capacity: usize,
    retry_after: Duration,
    closed: AtomicBool,
    bytes_gauge: Arc<Gauge>,
    requests_gauge: Arc<Gauge>,
    capacity_gauge: Arc<Gauge>,
}

impl Item {
    /// The bytes it holds in memory (the body, and its gzip member when kept).
    pub(crate) fn held(&self) -> usize {
        self.body.len() + self.gzip.as_ref().map_or(0, Bytes::len)
    }
}

impl ForwardQueue {
    /// A queue holding at most `capacity` bytes; refused clients are told to wait `retry_after`.
    pub(crate) fn new(
        capacity: usize,
        retry_after: Duration,
        spill: Option<Arc<Spill>>,
        registry: &Registry,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Item>) {
        let (tx, rx) = mpsc::unbounded_channel();
        // The gauges are shared by the queues of every routed endpoint: each adds its part.
        let capacity_gauge = registry.gauge(&names::QUEUE_CAPACITY_BYTES, &[]);
        capacity_gauge.add(capacity as i64);
        let q = ForwardQueue {
            spill,
            tx,
            bytes: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            per_signal: Default::default(),
            capacity,
            retry_after,
            closed: AtomicBool::new(false),
            bytes_gauge: registry.gauge(&names::QUEUE_BYTES, &[]),
            requests_gauge: registry.gauge(&names::QUEUE_REQUESTS, &[]),
            capacity_gauge,
        };
        (Arc::new(q), rx)
    }

    /// Bytes waiting (queued or in flight).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Requests waiting in the disk spill.
    pub fn spilled_requests(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.requests())
    }

    /// Bytes of the disk spill's files.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.bytes())
    }

    /// Requests waiting in memory (queued or in flight).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Requests of `signal` waiting (queued or in flight).
    pub fn requests_of(&self, signal: Signal) -> usize {
        self.per_signal[signal_index(signal)].load(Ordering::Acquire)
    }

    /// Stops accepting requests (shutdown).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Marks one request as done (delivered or given up), freeing its bytes.
    pub(crate) fn release(&self, signal: Signal, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.requests.fetch_sub(1, Ordering::AcqRel);
        self.per_signal[signal_index(signal)].fetch_sub(1, Ordering::AcqRel);
        self.bytes_gauge.add(-(len as i64));
        self.requests_gauge.add(-1);
    }
}

impl ForwardSink for ForwardQueue {
    fn forward(&self, signal: Signal, body: Bytes) -> Result<(), Backpressure> {
        self.push(signal, body, None)
    }

    fn forward_gzipped(
        &self,
        signal: Signal,
        body: Bytes,
        gzip: Bytes,
    ) -> Result<(), Backpressure> {
        self.push(signal, body, Some(gzip))
    }

    fn would_refuse(&self, _signal: Signal, len: usize) -> Option<Backpressure> {
        let refuse = Some(Backpressure {
            retry_after: self.retry_after,
        });
        if self.closed.load(Ordering::Acquire) {
            return refuse;
        }
        // With a spill, a full queue still takes the request (on disk) until the spill is full.
        let before = self.bytes.load(Ordering::Acquire);
        if self.spill.is_none() && before > 0 && before + len > self.capacity {
            return refuse;
        }
        None
    }
}

impl ForwardQueue {
    /// Queues a request (its body in memory, or in the spill when memory is full).
    fn push(&self, signal: Signal, body: Bytes, gzip: Option<Bytes>) -> Result<(), Backpressure> {
        let refuse = Backpressure {
            retry_after: self.retry_after,
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(refuse);
        }
        let len = body.len() + gzip.as_ref().map_or(0, Bytes::len);
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        // One request larger than the whole queue is let in when the queue is empty, or it
        // could never be delivered.
        if before > 0 && before + len > self.capacity {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            return match &self.spill {
                Some(spill) => match spill.append(signal, &body, SpillReason::QueueFull) {
                    Ok(()) => Ok(()),
                    Err(AppendError::Full) => Err(refuse),
                    Err(AppendError::Io(e)) => {
                        tracing::error!("forward spill: cannot write a request ({e}); refusing it");
                        Err(refuse)
                    }
                },
                None => Err(refuse),
            };
        }
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.per_signal[signal_index(signal)].fetch_add(1, Ordering::AcqRel);
        let item = Item {
            signal,
            body,
            gzip,
            spilled: None,
        };
        if self.tx.send(item).is_err() {
            self.release(signal, len);
            return Err(refuse);
        }
        self.bytes_gauge.add(len as i64);
        self.requests_gauge.add(1);
        Ok(())
    }
}

impl Drop for ForwardQueue {
    fn drop(&mut self) {
        self.capacity_gauge.add(-(self.capacity as i64));
        self.bytes_gauge.add(-(self.bytes() as i64));
        self.requests_gauge.add(-(self.requests() as i64));
    }
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}
