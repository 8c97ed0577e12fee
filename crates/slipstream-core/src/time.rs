//! Time, injected: the [`Clock`] trait, the system clock and a manual clock for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, the unit OTLP timestamps use.
pub type UnixNanos = u64;

/// A source of wall-clock time. Windows, slots and alerts read time only through this.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time in Unix nanoseconds.
    fn now_unix_nanos(&self) -> UnixNanos;
}

/// The operating system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_nanos(&self) -> UnixNanos {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: UnixNanos) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start)))
    }

    /// Sets the time.
    pub fn set(&self, t: UnixNanos) {
        self.0.store(t, Ordering::SeqCst);
    }

    /// Moves the time forward by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_nanos(&self) -> UnixNanos {
        self.0.load(Ordering::SeqCst)
    }
}
