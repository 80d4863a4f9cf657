#!/usr/bin/env bash
# Fault suite for `keywatch run`, run by hand (not in CI): kill -9 with and
# without the changelog, a paused broker, a full disk, a damaged findings
# store; each case against its own local tansu on 127.0.0.1 and compared
# with a clean run of the same topic. One line per case; exit 1 if anything
# was lost. Needs tansu and the Python confluent-kafka client (.ci/test
# installs both); the disk_full case needs root (it mounts a tmpfs).
#
#   benches/faults.sh [--cases kill9_no_changelog,kill9_changelog,broker_pause,disk_full,damaged_store] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
exec python3 benches/faults.py "$@"
