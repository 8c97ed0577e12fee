//! Burn-rate events on stdout, one JSON object per line.
//!
//! Each line is the event's JSON form, the same document the webhook posts (see
//! [`slipstream_core::BurnRateEvent`]). Stdout is locked for the batch, written and flushed,
//! so lines from concurrent writers never interleave. A failed write (a closed pipe) is logged
//! and the events are lost: stdout has no queue and no retries.

use std::io::{self, Write};

use slipstream_core::BurnRateEvent;

/// Writes burn-rate events to stdout (`exporters.stdout.enabled`).
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutExporter;

impl StdoutExporter {
    /// Writes `events`, one line each, to stdout and flushes.
    pub fn publish(&self, events: &[BurnRateEvent]) {
        if events.is_empty() {
            return;
        }
        let stdout = io::stdout();
        let mut out = stdout.lock();
        if let Err(e) = write_lines(&mut out, events) {
            tracing::warn!(error = %e, "writing burn-rate events to stdout failed");
        }
    }

    /// Writes one event.
    pub fn send(&self, event: &BurnRateEvent) {
        self.publish(std::slice::from_ref(event));
    }
}

impl crate::lifecycle::Exporter for StdoutExporter {
    fn name(&self) -> &'static str {
        "stdout"
    }

    /// Nothing to drain: every line is written when published.
    fn shutdown(self: Box<Self>, _deadline: std::time::Duration) -> crate::lifecycle::Drain {
        Box::pin(std::future::ready(0))
    }
}

impl crate::lifecycle::EventExporter for StdoutExporter {
    fn publish(&self, events: &[BurnRateEvent]) {
        StdoutExporter::publish(self, events);
    }
}

/// Writes each event as one JSON line to `out`, then flushes it.
pub fn write_lines(out: &mut impl Write, events: &[BurnRateEvent]) -> io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests;
