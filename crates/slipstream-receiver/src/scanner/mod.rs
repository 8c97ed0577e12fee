//! Walks the OTLP protobuf wire format for the fields an SLI needs.
