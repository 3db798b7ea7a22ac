#!/usr/bin/env bash
# Machines looking for bugs, in one CPU-only clang build at -O1 with AddressSanitizer and
# UndefinedBehaviorSanitizer (BUILD_DIR, default build-sanitize):
# 1. the CPU unit tests (dino_tests without its [slow] training runs, in one process): an
#    out-of-bounds access, a use after free, a leak or an undefined behaviour fails them;
# 2. each libFuzzer target (fuzz/README.md: safetensors, IDX, CIFAR, image decoders,
#    recipes) for SECONDS (default 25) from its seeds in fuzz/corpus. A crash, leak, timeout
#    or out-of-memory fails it, the input saved under BUILD_DIR/fuzz-artifacts/ (replay it:
#    BUILD_DIR/fuzz_NAME FILE).
# SEED (default 1) fixes libFuzzer's random choices, so a check that passed passes again on
# the same code and a finding can be reproduced; 0 draws a new seed each run, for longer
# searches (e.g. tools/sanitize-check.sh build-sanitize 600 0).
#   tools/sanitize-check.sh [BUILD_DIR] [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-sanitize}
seconds=${2:-25}
seed=${3:-1}
targets=(safetensors idx cifar image recipe)
start=$SECONDS
cmake -S . -B "$dir" -DDINO_CUDA=OFF -DDINO_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 \
      -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -gline-tables-only" >/dev/null
cmake --build "$dir" -j2 --target dino_tests "${targets[@]/#/fuzz_}"
built=$SECONDS

ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$dir/dino_tests" "~[slow]"
tested=$SECONDS

mkdir -p "$dir/fuzz-artifacts"
for t in "${targets[@]}"; do
  seeds=(fuzz/corpus/$t)
  [ "$t" = recipe ] && seeds+=(configs)
  work=$(mktemp -d)  # new inputs go here: the committed seeds stay as they are
  log="$dir/fuzz-artifacts/$t.log"
  if ! ASAN_OPTIONS=detect_leaks=1 "$dir/fuzz_$t" -max_total_time="$seconds" -seed="$seed" -timeout=10 \
       -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/fuzz-artifacts/$t-" \
       "$work" "${seeds[@]}" >"$log" 2>&1; then
    tail -n 60 "$log"
    rm -rf "$work"
    used=$(sed -n 's/^INFO: Seed: *//p' "$log" | head -n 1)
    echo "sanitize-check: fuzz_$t failed, seed ${used} (its input is in $dir/fuzz-artifacts/)" >&2
    exit 1
  fi
  rm -rf "$work"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  used=$(sed -n 's/^INFO: Seed: *//p' "$log" | head -n 1)
  echo "sanitize-check: fuzz_$t ran ${runs} inputs in ${seconds} s (${cov}, seed ${used}), nothing found"
done
echo "sanitize-check: build $((built - start)) s, tests $((tested - built)) s, fuzzing $((SECONDS - tested)) s"
