//! The synchronization primitives of the shard hand-off: loom's models under `cfg(loom)`,
//! the standard library's otherwise.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: shard state stays consistent between spans, so a panic in
/// one request leaves nothing half-written that the next request or tick could misread.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
