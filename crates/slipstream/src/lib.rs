//! slipstream, the program: the command line ([`cli`]), the wiring of the pipeline ([`app`])
//! and the admin server ([`admin`]).
//!
//! The components (receiver, aggregator, SLO engine, exporters, state) never see each other;
//! this crate builds each from its config section and plugs them together through the traits
//! of `slipstream-core`.
#![deny(unsafe_code)]

pub mod admin;
pub mod allocator;
pub mod api;
pub mod app;
pub mod cli;
pub mod evaluate;
pub mod generate;
pub mod live;
pub mod memory;
pub mod replay;
pub mod series;
pub mod state;
pub mod status;
pub mod tick;
pub mod ui;
