//! The OTLP receivers: gRPC and HTTP servers, admission, and the span scanner.
#![forbid(unsafe_code)]

pub mod scanner;
