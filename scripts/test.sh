#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need (Python OTel SDK,
# Prometheus, Alertmanager, cargo-nextest), then format check, clippy with warnings as errors,
# every test of the workspace, doc tests, a compile check of the benches, the deploy manifests
# rendered and validated, and a bounded fuzz run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot run gains nothing from incremental caches, and they are gigabytes on disk.
export CARGO_INCREMENTAL=0

scripts/test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== deploy manifests"
scripts/validate-deploy.sh
echo "== tests"
cargo nextest run --workspace --no-fail-fast
echo "== doc tests"
cargo test --workspace --doc
echo "== loom model of the shard hand-off (its own target dir: --cfg loom rebuilds the crates)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p slipstream-aggregator --release --lib loom
echo "== benches compile (bench targets only; the crates' unit tests ran above)"
cargo bench --workspace --bench '*' --no-run
echo "== bounded fuzz run (every target)"
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
