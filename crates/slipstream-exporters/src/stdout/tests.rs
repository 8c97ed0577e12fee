use slipstream_core::export::EventState;

use super::write_lines;
use crate::events::fixture::event;

#[test]
fn each_event_is_one_json_line() {
    let events = [event(EventState::Firing), event(EventState::Resolved)];
    let mut out = Vec::new();
    write_lines(&mut out, &events).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(text.ends_with('\n'));
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first, serde_json::to_value(&events[0]).unwrap());
    assert_eq!(first["state"], "firing");
    assert_eq!(first["long_window"], "1h");
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["state"], "resolved");
    assert_eq!(second["short_burn_rate"], serde_json::Value::Null);
}
