//! The running collector: the wiring of the pipeline ([`app`]), the admin server ([`admin`],
//! [`api`], [`ui`]), the memory limit ([`memory`], [`allocator`]), saved state ([`state`]) and state
//! taken from peer gateways ([`peers`]).
//!
//! The components (receiver, aggregator, SLO engine, exporters, state) never see each other;
//! this crate builds each from its config section and plugs them together through the traits
//! of `slipstream-core` and the evaluation step of `slipstream-step`.
#![deny(unsafe_code)]

pub mod admin;
pub mod allocator;
pub mod api;
pub mod app;
pub mod memory;
pub mod peers;
pub mod sinks;
pub mod state;
pub mod ui;
