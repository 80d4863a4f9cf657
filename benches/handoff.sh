#!/usr/bin/env bash
# Partition handoff through a real broker: starts a local tansu and runs the
# handoff benchmark against it (librdkafka's mock broker trims a partition
# past a few MB, too little for a 100k-key snapshot). Run by hand; needs
# tansu (.ci/test installs it).
#
#   benches/handoff.sh [KEYS]      (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/support/tansu.sh
KEYS=${1:-100000}; shift || true
PORT=${PORT:-19093}
BROKER=127.0.0.1:$PORT
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo bench --no-run --quiet --bench handoff 2>/dev/null
BENCH=$(ls -t target/release/deps/handoff-* | grep -v '\.d$' | head -1)
start_tansu "$PORT" "$WORK/tansu.log"
KEYWATCH_BENCH_BROKERS=$BROKER "$BENCH" --bench "$KEYS" "$@"
