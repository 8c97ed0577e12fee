use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Readiness;

#[test]
fn not_ready_while_over_the_memory_limit() {
    let over = Arc::new(AtomicBool::new(false));
    let readiness = Readiness {
        listening: Arc::new(AtomicBool::new(true)),
        downstream: None,
        memory_over: Some(over.clone()),
    };
    assert_eq!(readiness.check(), Ok(()));
    over.store(true, Ordering::Relaxed);
    assert_eq!(
        readiness.check(),
        Err("over the memory limit: new requests are refused")
    );
    over.store(false, Ordering::Relaxed);
    assert_eq!(readiness.check(), Ok(()));
}

#[test]
fn without_a_memory_limit_readiness_is_the_listeners_and_the_downstream() {
    let listening = Arc::new(AtomicBool::new(false));
    let readiness = Readiness {
        listening: listening.clone(),
        downstream: None,
        memory_over: None,
    };
    assert_eq!(readiness.check(), Err("receivers are not listening yet"));
    listening.store(true, Ordering::Release);
    assert_eq!(readiness.check(), Ok(()));
}
