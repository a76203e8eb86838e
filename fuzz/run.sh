#!/usr/bin/env bash
# Runs each fuzz target for a bounded time: fuzz/run.sh [SECONDS_PER_TARGET] (default 120).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); builds in release mode (-O) with ASan.
# cargo-fuzz passes nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. New inputs go to fuzz/corpus/ (not committed); crashes to fuzz/artifacts/.
# Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
export RUSTC_BOOTSTRAP=1
for target in envelope arguments; do
  mkdir -p "fuzz/corpus/$target"
  echo "== fuzzing $target for ${seconds}s" >&2
  cargo fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
done
