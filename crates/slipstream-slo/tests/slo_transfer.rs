//! One service's state handed from one engine to another (a gateway taking a service from a
//! peer): exported, serialized, imported into an engine that holds nothing of the service,
//! the service evaluates there as in the engine it came from, and nothing else moves.

mod common;

use common::*;
use slipstream_slo::{AlertState, EngineState, Severity, SloStatus};

const CONFIG: &str = "  min_events: 0
  templates:
    availability: { objective: 99 }
    latency: null
  objectives:
    - name: api
      service: api
      objective: 99.9
";

/// Two hours of traffic on `api` (explicit) and the templated `cart` and `web`: `cart`
/// fails half its requests in the last 20 minutes, so its pages fire.
fn peer() -> Harness {
    let mut h = harness(CONFIG);
    for m in 0..120 {
        let t = h.now();
        for s in ["api", "cart", "web"] {
            h.engine.service_seen(s);
        }
        let cart_bad = if m >= 100 { 500 } else { m % 3 };
        let (api, cart, web) = (
            h.id("api"),
            h.id("cart-availability"),
            h.id("web-availability"),
        );
        h.engine.observe(api, t, 1000 - m % 2, 1000);
        h.engine.observe(cart, t, 1000 - cart_bad, 1000);
        h.engine.observe(web, t, 100, 100);
        h.engine.observe_version("cart", "2.0", t);
        h.clock.set(t + MIN);
        h.engine.tick();
    }
    h
}

fn through_json(state: EngineState) -> EngineState {
    serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap()
}

/// The SLO `name` as of the last tick, its id aside (ids are each engine's own).
fn status(h: &Harness, name: &str) -> SloStatus {
    let mut s = h
        .engine
        .snapshot()
        .slo(name)
        .cloned()
        .expect("SLO in the snapshot");
    s.id = slipstream_slo::SloId(0);
    s
}

#[test]
fn a_service_imported_from_a_peer_evaluates_as_it_did_there_without_a_new_page() {
    let mut a = peer();
    let firing = |h: &Harness| {
        status(h, "cart-availability")
            .alerts
            .iter()
            .any(|r| r.firing && r.row.severity == Severity::Page)
    };
    assert!(firing(&a), "the peer pages for cart");

    let mut b = harness(CONFIG);
    b.clock.set(a.now());
    let state = through_json(a.engine.export_service("cart").expect("cart is held"));
    assert_eq!(
        state.slo_names().collect::<Vec<_>>(),
        vec!["cart-availability"]
    );
    assert_eq!(state.silence_count(), 0);
    let report = b.engine.import_service("cart", state);
    assert_eq!(report.restored, vec!["cart-availability".to_owned()]);
    assert!(report.dropped.is_empty() && report.firing_dropped.is_empty());
    assert!(b.engine.is_tracked("cart"));
    assert!(!b.engine.is_tracked("web"), "only the service asked for");

    // The same evaluation, and no firing event for a page the peer already sent.
    let events = b.engine.tick();
    assert!(events.is_empty(), "{events:?}");
    a.engine.tick();
    assert!(firing(&b));
    assert_eq!(
        (status(&b, "cart-availability")),
        (status(&a, "cart-availability"))
    );
    let (versions, running) = b.engine.versions_since("cart", 0);
    assert_eq!(versions, vec!["2.0".to_owned()]);
    assert!(running.is_some());

    // Both count the same traffic from then on and stay equal; the page resolves on both.
    for _ in 0..30 {
        let t = a.now();
        let (ia, ib) = (a.id("cart-availability"), b.id("cart-availability"));
        a.engine.observe(ia, t, 1000, 1000);
        b.engine.observe(ib, t, 1000, 1000);
        a.clock.set(t + MIN);
        b.clock.set(t + MIN);
        let (ea, eb) = (a.engine.tick(), b.engine.tick());
        let states = |e: &[slipstream_slo::AlertEvent]| -> Vec<(AlertState, Severity)> {
            e.iter().map(|e| (e.state, e.severity)).collect()
        };
        assert_eq!(states(&ea), states(&eb));
    }
    assert_eq!(
        (status(&b, "cart-availability")),
        (status(&a, "cart-availability"))
    );
}

#[test]
fn an_explicit_objective_takes_its_windows_and_nothing_is_held_for_an_unknown_service() {
    let mut a = peer();
    assert!(a.engine.export_service("nobody").is_none());

    let mut b = harness(CONFIG);
    b.clock.set(a.now());
    let state = through_json(a.engine.export_service("api").unwrap());
    // Another service's name does not take `api`'s state.
    let report = b.engine.import_service("web", state.clone());
    assert!(report.restored.is_empty() && !b.engine.is_tracked("web"));
    let report = b.engine.import_service("api", state);
    assert_eq!(report.restored, vec!["api".to_owned()]);
    b.engine.tick();
    a.engine.tick();
    assert_eq!((status(&b, "api")), (status(&a, "api")));
}

#[test]
fn a_service_forgotten_and_taken_again_equals_the_peers_and_nothing_else_changes() {
    let mut a = peer();
    // `b` saw `cart` for 90 minutes only, then nothing of it (it left its replicas).
    let mut b = harness(CONFIG);
    for m in 0..120 {
        let t = b.now();
        b.engine.service_seen("web");
        let web = b.id("web-availability");
        b.engine.observe(web, t, 100, 100);
        if m < 90 {
            b.engine.service_seen("cart");
            let cart = b.id("cart-availability");
            b.engine.observe(cart, t, 1000 - m % 3, 1000);
        }
        b.clock.set(t + MIN);
        b.engine.tick();
    }
    assert_eq!(b.engine.last_traffic("cart"), Some(START + 89 * MIN));
    assert_eq!(b.engine.last_traffic("nobody"), None);
    assert_eq!(b.now(), a.now());
    let web_before = status(&b, "web-availability");

    b.engine.forget_service("cart");
    assert!(!b.engine.is_tracked("cart") && b.engine.id("cart-availability").is_none());
    assert_eq!(b.engine.last_traffic("cart"), None);
    let state = through_json(a.engine.export_service("cart").unwrap());
    let report = b.engine.import_service("cart", state);
    assert_eq!(report.restored, vec!["cart-availability".to_owned()]);
    a.engine.tick();
    let events = b.engine.tick();
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        status(&b, "cart-availability"),
        status(&a, "cart-availability")
    );
    assert_eq!(
        status(&b, "web-availability").windows,
        web_before.windows,
        "another service keeps its data"
    );

    // An explicit objective is reset in place, then takes the peer's windows.
    b.engine.service_seen("api");
    let api = b.id("api");
    b.engine.observe(api, b.now() - MIN, 5, 10);
    b.engine.forget_service("api");
    let state = through_json(a.engine.export_service("api").unwrap());
    b.engine.import_service("api", state);
    b.engine.tick();
    a.engine.tick();
    assert_eq!(status(&b, "api"), status(&a, "api"));
}

#[test]
fn a_service_handed_off_sends_no_event_keeps_its_state_and_is_taken_back() {
    let mut a = peer();
    assert!(a.engine.hand_off("cart"));
    assert!(!a.engine.hand_off("cart"), "handed off once");
    assert!(a.engine.is_handed_off("cart"));
    assert!(a.engine.services().contains(&"cart".to_owned()));
    // An hour without traffic: cart's pages resolve in its own evaluation, and nothing is
    // sent for it; web, still this engine's, goes on.
    let mut sent = Vec::new();
    for _ in 0..60 {
        let t = a.now();
        let web = a.id("web-availability");
        a.engine.observe(web, t, 0, 100);
        a.clock.set(t + MIN);
        sent.extend(a.engine.tick());
    }
    assert!(sent.iter().all(|e| e.service != "cart"), "{sent:#?}");
    assert!(sent.iter().any(|e| e.service == "web"));
    assert!(a.engine.export_service("cart").is_some(), "the state stays");
    assert!(a.engine.take_back("cart"));
    assert!(!a.engine.is_handed_off("cart"));
    assert!(!a.engine.take_back("cart"));
}
