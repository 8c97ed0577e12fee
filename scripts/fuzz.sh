#!/usr/bin/env bash
# A bounded fuzz run of every fuzz target (fuzz/fuzz_targets/*.rs), SECONDS each (default 20).
#
# One `cargo build` builds every target, in the workspace's `fuzz` profile, with the coverage
# instrumentation and `--cfg fuzzing` that cargo-fuzz passes (so cargo-fuzz need not be
# installed) and no sanitizer: Rust's bounds checks, debug assertions and overflow checks catch
# what a sanitizer would. Each binary is libFuzzer itself and is run directly. A crash fails
# the run and leaves its input in fuzz/artifacts/<target>/; replay it with
# `target/<host>/fuzz/<target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
host=$(rustc -vV | sed -n 's/^host: //p')
targets=$(for f in fuzz/fuzz_targets/*.rs; do basename "$f" .rs; done)

# cargo-fuzz 0.13's flags for `cargo fuzz build -s none` on Linux. `--target` keeps them off
# build scripts and proc macros, which are not fuzzed.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module"
for arg in sanitizer-coverage-level=4 sanitizer-coverage-inline-8bit-counters \
  sanitizer-coverage-pc-table sanitizer-coverage-trace-compares \
  simplifycfg-branch-fold-threshold=0 sanitizer-coverage-stack-depth; do
  RUSTFLAGS+=" -Cllvm-args=-$arg"
done
export RUSTFLAGS
echo "== build the fuzz targets"
cargo build -p slipstream-fuzz --profile fuzz --target "$host" --bins

bin="${CARGO_TARGET_DIR:-target}/$host/fuzz"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "== fuzz $t for ${secs}s"
  if ! "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" \
    -rss_limit_mb=2048 "fuzz/corpus/$t" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t failed; its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  tail -n 2 "$log"
done
