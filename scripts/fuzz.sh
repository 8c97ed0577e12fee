#!/usr/bin/env bash
# A bounded fuzz run of every cargo-fuzz target (fuzz/fuzz_targets), SECONDS each (default 20),
# on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the coverage flags
# cargo-fuzz passes; no sanitizer (Rust's own checks catch out-of-bounds and overflow). A crash
# fails the run and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
cargo fuzz build -s none $targets >/dev/null 2>&1 || cargo fuzz build -s none
for t in $targets; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t for ${secs}s"
  cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -2
done
