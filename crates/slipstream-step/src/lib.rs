//! The evaluation step: from the aggregator's shards to SLO state, SLI series and burn-rate
//! events.
#![deny(unsafe_code)]

pub mod evaluate;
pub mod publish;
pub mod series;
pub mod thread;
