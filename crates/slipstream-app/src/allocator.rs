//! Giving freed memory back to the system when the memory limit asks for it: the crate's one
//! use of `unsafe` (a call into mimalloc's C API).
//!
//! mimalloc keeps what a thread frees in that thread's heap, and a block freed by another
//! thread (a request body read by one worker and freed by the forwarder on another) waits on
//! its page until the owning thread next looks. After a downstream outage has filled the
//! forward queue up to the memory limit and the queue has drained, nearly all of it can stay
//! resident, so resident memory never falls below the limit and the receivers would refuse
//! requests for good. While over the limit, the memory monitor calls [`request_collect`]
//! on every check; each runtime worker, when it next goes idle ([`on_park`]), collects its own
//! heap with force, which frees those pages and returns them to the system.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped by each request; a thread collects when it has not seen the latest one.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// Asks every runtime worker to collect its heap the next time it goes idle, and collects
/// the calling thread's now.
pub fn request_collect() {
    let g = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    SEEN.with(|s| s.set(g));
    collect();
}

/// The runtime's park hook: collects this thread's heap if a collection was requested since
/// it last did. One atomic load otherwise.
pub fn on_park() {
    let g = GENERATION.load(Ordering::Relaxed);
    if SEEN.with(|s| s.replace(g)) != g {
        collect();
    }
}

/// Frees the calling thread's empty pages, including those emptied by other threads' frees,
/// and returns the memory to the system. Harmless (and cheap) where mimalloc is not the
/// global allocator: its heap for the thread is then empty.
fn collect() {
    // SAFETY: `mi_collect` takes no pointers and only touches mimalloc's own state for the
    // calling thread (and its shared arenas, under mimalloc's own synchronization); it is
    // safe to call from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_collected_once_per_thread() {
        on_park();
        let before = SEEN.with(Cell::get);
        std::thread::spawn(request_collect).join().unwrap();
        let after = GENERATION.load(Ordering::Relaxed);
        assert!(after > before);
        // This thread has not seen it yet: its next park collects and records it.
        on_park();
        assert_eq!(SEEN.with(Cell::get), after);
    }
}
