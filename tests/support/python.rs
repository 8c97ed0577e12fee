//! The Python OpenTelemetry SDK, installed by `scripts/test-deps.sh` into `tests/.venv`.

use std::path::PathBuf;

/// The Python interpreter that has `opentelemetry-sdk` and `opentelemetry-exporter-otlp`:
/// `$SLIPSTREAM_PYTHON`, else `tests/.venv/bin/python`. Panics with the fix when missing.
pub fn interpreter() -> PathBuf {
    let path = std::env::var_os("SLIPSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test-deps.sh (it installs the Python OpenTelemetry SDK into tests/.venv)",
        path.display()
    );
    path
}

/// A script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}
