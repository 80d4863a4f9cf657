#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer and runs each for SECONDS (default
# 60), one after another, at nice 10.
#
#   fuzz/run.sh [seconds-per-target] [target...]
#   RUNS=10000000 fuzz/run.sh 0 [target...]   # a number of executions instead
#
# Stable Rust is enough: coverage comes from LLVM's SanitizerCoverage pass,
# switched on with stable codegen flags (`-Cpasses=sancov-module` and
# `-Cllvm-args`), and libfuzzer-sys compiles libFuzzer itself with the C++
# compiler. No AddressSanitizer (that needs nightly's -Zsanitizer): Rust's
# own checks catch what matters here, panics (debug assertions and
# overflow checks are on), and libFuzzer catches hangs (-timeout), large
# allocations (-malloc_limit_mb) and memory growth (-rss_limit_mb).
#
# The working corpus grows in fuzz/corpus/TARGET (seeded from fuzz/seeds/),
# crashes land in fuzz/artifacts/TARGET; both are ignored by git. Reproduce
# one with `$BIN/TARGET fuzz/artifacts/TARGET/crash-…`, minimise it with
# `-minimize_crash=1 -runs=10000`.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode checkpoint changelog inventory config)

triple=$(rustc -vV | sed -n 's/^host: //p')
# A target dir of its own: these flags would rebuild the main crate's.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"
# --target keeps RUSTFLAGS off build scripts, which are not linked with libFuzzer.
nice -n 10 cargo build --release --locked --target "$triple" $(printf -- '--bin %s ' "${targets[@]}")
bin=$CARGO_TARGET_DIR/$triple/release

status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    if [ -n "${RUNS:-}" ]; then
        budget=(-runs="$RUNS"); echo "== $t: $RUNS executions"
    else
        budget=(-max_total_time="$seconds"); echo "== $t: ${seconds}s"
    fi
    # -max_len: messages and files are fuzzed up to 64 KiB; larger ones
    # are bounded by the decoder's size limit before any parsing.
    nice -n 10 "$bin/$t" "corpus/$t" "seeds/$t" \
        "${budget[@]}" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        2>"artifacts/$t.log" || status=1
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^(==|SUMMARY|Done)' "artifacts/$t.log" || true
    ls "artifacts/$t" | sed 's/^/  found: /'
done
exit $status
