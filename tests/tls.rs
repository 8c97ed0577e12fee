//! TLS and mutual TLS on the receivers and on the forward client.
