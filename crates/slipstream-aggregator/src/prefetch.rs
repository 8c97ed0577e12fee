//! A cache prefetch hint, for the shard's lookahead over a request's spans: the crate's one
//! use of `unsafe`.
#![allow(unsafe_code)]

/// Asks the CPU to bring the cache line holding `p` into all cache levels. A hint only:
/// nothing is read into the program, and an address that is not mapped is ignored.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint that never faults and never dereferences `p` on the
    // program's behalf, whatever the address; SSE, which it needs, is part of the x86_64
    // baseline every Rust x86_64 target enables.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
