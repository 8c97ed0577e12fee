//! slipstream, the program: the command line ([`cli`]) and its commands: `run` (the collector,
//! `slipstream-app`), [`generate`], [`replay`] and [`status`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod generate;
pub mod replay;
pub mod status;
