#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need (Python OTel SDK,
# Prometheus, Alertmanager, Chromium; cargo-nextest if missing), then format check, clippy with
# warnings as errors over every target of the workspace (the benches and fuzz targets included:
# that is their compile check), the deploy manifests rendered and validated, every test of the
# workspace, doc tests, the loom model of the shard hand-off, and a bounded fuzz run of every
# fuzz target. Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot run gains nothing from incremental caches, and they are gigabytes on disk.
export CARGO_INCREMENTAL=0

started=$SECONDS
# step NAME COMMAND...: runs COMMAND under a heading and prints its duration.
step() {
  local name=$1 t0=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "== $name: $((SECONDS - t0)) s (total $((SECONDS - started)) s)"
}

step "test dependencies" scripts/test-deps.sh
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy (warnings are errors)" cargo clippy --workspace --all-targets -- -D warnings
step "deploy manifests" scripts/validate-deploy.sh
step "tests" cargo nextest run --workspace --no-fail-fast
step "doc tests" cargo test --workspace --doc
# --cfg loom swaps the hand-off's primitives for loom's and so rebuilds every crate it touches:
# its own target dir keeps that apart from the other builds. Unoptimised: the model runs in
# milliseconds either way, and a debug build costs far less CPU than a release one.
step "loom model of the shard hand-off" env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test -p slipstream-aggregator --lib loom
step "bounded fuzz run (every target)" scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
echo "== all checks passed in $((SECONDS - started)) s"
