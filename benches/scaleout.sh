#!/usr/bin/env bash
# Scale-out on one machine: the same topic (1M CloudTrail events, 12
# partitions, local tansu) consumed by a group of 1, 2 and 3 `keywatch run`
# instances, each with the changelog on (the default). Reports wall time for
# the group, and per instance the messages it applied, its rate and its CPU.
# Every instance shares the same two cores with the broker: read the per-
# instance rates and CPU, not a speed-up. Run by hand; needs tansu and the
# Python confluent-kafka client (.ci/test installs both).
#
#   benches/scaleout.sh [EVENTS] [KEYS]      (defaults: 1000000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
KEYS=${2:-100000}
PORT=${PORT:-19094}
BROKER=127.0.0.1:$PORT
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet
KW=target/release/keywatch
TICK=$(getconf CLK_TCK)

tansu broker --storage-engine memory://tansu/ --listener-url tcp://$BROKER \
    --advertised-listener-url tcp://$BROKER >"$WORK/tansu.log" 2>&1 &
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
tansu topic create events --broker tcp://$BROKER --partitions 12 >/dev/null

VOLUME=$(python3 -c "print($EVENTS / ($KEYS * 1100.0))")
$KW gen --format cloudtrail --keys "$KEYS" --days 1 --volume "$VOLUME" --seed 9 -o "$WORK/events.jsonl"
head -n "$EVENTS" "$WORK/events.jsonl" >"$WORK/n.jsonl"
N=$(wc -l <"$WORK/n.jsonl")
python3 tests/e2e/produce.py --brokers "$BROKER" --topic events --key-field userIdentity.accessKeyId "$WORK/n.jsonl" >/dev/null
echo "topic holds $N CloudTrail events in 12 partitions"

cpu_seconds() { awk -v t="$TICK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

for INSTANCES in 1 2 3; do
    GROUP=kw-scale-$INSTANCES
    PIDS=()
    for i in $(seq "$INSTANCES"); do
        DIR=$WORK/$GROUP/$i
        mkdir -p "$DIR"
        cat >"$DIR/kw.toml" <<TOML
[decode]
profile = "cloudtrail"
[kafka]
brokers = "$BROKER"
topics = ["events"]
group_id = "$GROUP"
commit_interval = "1s"
[http]
listen = "127.0.0.1:0"
[checkpoint]
dir = "$DIR/checkpoints"
[changelog]
topic = "keywatch-state-$GROUP"
TOML
        KEYWATCH_LOG=info $KW run -c "$DIR/kw.toml" 2>"$DIR/kw.log" &
        PIDS+=($!)
    done
    SECS=$(python3 benches/group_progress.py "$BROKER" "$GROUP" events "$N")
    CPU=()
    for p in "${PIDS[@]}"; do CPU+=("$(cpu_seconds "$p")"); done
    for p in "${PIDS[@]}"; do kill -TERM "$p"; done
    for p in "${PIDS[@]}"; do wait "$p" || true; done
    echo "-- $INSTANCES instance(s): $N events in ${SECS}s including group join = $(python3 -c "print(round($N/$SECS))") events/s for the group"
    for i in $(seq "$INSTANCES"); do
        LOG=$WORK/$GROUP/$i/kw.log
        MSGS=$(grep -o 'consumer stopped and committed messages=[0-9]*' "$LOG" | grep -o '[0-9]*$' || echo 0)
        MOVES=$(grep -c 'partition state restored' "$LOG" || true)
        C=${CPU[$((i - 1))]}
        echo "   instance $i: $MSGS messages, $(python3 -c "print(round($MSGS/$SECS))") events/s, CPU ${C}s = $(python3 -c "print(round(100*$C/$SECS))")% of one core, $MOVES partition restores"
    done
done
