//! criterion bench: scanner (filled in by its issue).
#![allow(missing_docs)]
fn main() {}
