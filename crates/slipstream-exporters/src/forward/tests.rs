use std::time::Duration;

use bytes::Bytes;
use slipstream_core::{ForwardSink, Registry, Signal};

use super::ForwardQueue;

fn body(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

#[test]
fn queue_refuses_with_retry_delay_once_full_and_frees_on_release() {
    let registry = Registry::new();
    let (q, mut rx) = ForwardQueue::new(100, Duration::from_secs(3), &registry);
    q.forward(Signal::Traces, body(60)).unwrap();
    q.forward(Signal::Logs, body(40)).unwrap();
    let refused = q.forward(Signal::Traces, body(1)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(3));
    assert_eq!((q.bytes(), q.requests()), (100, 2));
    assert_eq!(
        registry.value("slipstream_forward_queue_bytes", &[]),
        Some(100)
    );
    let first = rx.try_recv().unwrap();
    assert_eq!((first.signal, first.body.len()), (Signal::Traces, 60));
    q.release(first.signal, first.body.len());
    assert_eq!(q.requests_of(Signal::Traces), 0);
    assert_eq!(q.requests_of(Signal::Logs), 1);
    q.forward(Signal::Metrics, body(60)).unwrap();
    assert_eq!(q.bytes(), 100);
}

#[test]
fn a_request_larger_than_the_queue_fits_only_when_it_is_empty() {
    let (q, _rx) = ForwardQueue::new(10, Duration::from_secs(1), &Registry::new());
    q.forward(Signal::Traces, body(50)).unwrap();
    assert!(q.forward(Signal::Traces, body(50)).is_err());
}

#[test]
fn a_closed_queue_refuses_everything() {
    let (q, _rx) = ForwardQueue::new(1000, Duration::from_secs(1), &Registry::new());
    q.close();
    assert!(q.forward(Signal::Traces, body(1)).is_err());
    assert_eq!(q.requests(), 0);
}
