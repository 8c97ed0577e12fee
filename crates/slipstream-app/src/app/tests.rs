use std::sync::{Arc, Mutex};

use super::*;

/// A log writer into memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Logs what a hostile sender can put in a log line, with the subscriber `init_logging`
/// builds for `json`, and returns the output.
fn log_hostile(json: bool) -> String {
    let out = Captured::default();
    let sink = out.clone();
    let writer = Redacting {
        inner: move || sink.clone(),
        json,
    };
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(writer);
    let service =
        "checkout\n2026-01-01T00:00:00Z ERROR forged: all alerts silenced\u{1b}[2J\r\u{9b}31m";
    let emit = || {
        tracing::warn!(
            service = %service,
            name = ?service,
            endpoint = %"https://user:hunter2@collector:4317/x",
            "new service {service}"
        );
    };
    if json {
        tracing::subscriber::with_default(builder.json().finish(), emit);
    } else {
        tracing::subscriber::with_default(builder.fmt_fields(text_fields()).finish(), emit);
    }
    out.text()
}

#[test]
fn text_logs_escape_control_characters_in_every_field() {
    let out = log_hostile(false);
    assert_eq!(out.lines().count(), 1, "one event, one line: {out:?}");
    assert!(out.ends_with('\n'));
    assert!(
        !out.trim_end_matches('\n').chars().any(char::is_control),
        "{out:?}"
    );
    assert!(out.contains("new service checkout\\n2026-01-01"), "{out}");
    assert!(out.contains("service=checkout\\n"), "{out}");
    assert!(out.contains("\\u{1b}[2J\\r\\u{9b}31m"), "{out}");
    assert!(!out.contains("hunter2") && !out.contains("user:"), "{out}");
    assert!(out.contains("https://<redacted>@collector:4317/x"), "{out}");
}

#[test]
fn json_logs_hold_no_control_character_either() {
    let out = log_hostile(true);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(
        !out.trim_end_matches('\n').chars().any(char::is_control),
        "{out:?}"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    let message = v["fields"]["message"].as_str().unwrap();
    assert!(message.contains("\u{1b}[2J\r\u{9b}31m"), "{message:?}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn escaping_leaves_plain_text_alone() {
    assert!(matches!(
        escape_controls("checkout é 漢"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(escape_controls("a\u{7f}b\u{0}"), "a\\u{7f}b\\u{0}");
}
