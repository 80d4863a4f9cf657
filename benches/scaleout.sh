#!/usr/bin/env bash
# Scale-out on one machine (local tansu, 12 partitions, 1M CloudTrail events):
# first one instance's capacity on a backlog, then groups of 1, 2 and 3
# `keywatch run` instances (changelog on, the default) that settle on an
# empty topic before the events are produced into it, so each member
# consumes its share. Reports per instance the messages it applied, its rate
# and its CPU. Every instance shares the same two cores with the broker and
# the producer: read per-instance rates and CPU, not a speed-up. Run by hand;
# needs tansu, curl and the Python confluent-kafka client (.ci/test installs
# tansu and the client).
#
#   benches/scaleout.sh [EVENTS] [KEYS]      (defaults: 1000000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/support/tansu.sh
EVENTS=${1:-1000000}
KEYS=${2:-100000}
PORT=${PORT:-19094}
BROKER=127.0.0.1:$PORT
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "logs kept in $WORK" || rm -rf "$WORK"' EXIT

cargo build --release --quiet
KW=target/release/keywatch
TICK=$(getconf CLK_TCK)

start_tansu "$PORT" "$WORK/tansu.log"
tansu topic create events --broker tcp://$BROKER --partitions 12 >/dev/null

cloudtrail_events "$KW" "$EVENTS" "$KEYS" "$WORK/n.jsonl"
N=$(wc -l <"$WORK/n.jsonl")

cpu_seconds() { awk -v t="$TICK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
owned() { # sum of partitions owned by the instances whose logs are given
    local total=0
    for log in "$@"; do
        addr=$(grep -o 'serving /metrics.*addr=[0-9.:]*' "$log" 2>/dev/null | grep -o '[0-9.]*:[0-9]*$' || true)
        [ -z "$addr" ] && { echo 0; return; }
        n=$(curl -s "http://$addr/metrics" | awk '/^keywatch_kafka_partitions_owned /{print $2}')
        [ -z "$n" ] || [ "$n" = 0 ] && { echo 0; return; }
        total=$((total + n))
    done
    echo $total
}

echo "-- capacity: one instance on a backlog of $N events"
tansu topic create backlog --broker tcp://$BROKER --partitions 12 >/dev/null
python3 tests/e2e/produce.py --brokers "$BROKER" --topic backlog --key-field userIdentity.accessKeyId "$WORK/n.jsonl" >/dev/null
mkdir -p "$WORK/backlog"
kw_config "$WORK/backlog/kw.toml" "$BROKER" backlog kw-backlog "$WORK/backlog/checkpoints" keywatch-state-backlog
KEYWATCH_LOG=info $KW run -c "$WORK/backlog/kw.toml" 2>"$WORK/backlog/kw.log" &
PID=$!
SECS=$(python3 benches/group_progress.py "$BROKER" kw-backlog backlog "$N")
C=$(cpu_seconds $PID)
kill -TERM $PID; wait $PID || true
echo "   $N events in ${SECS}s including group join = $(python3 -c "print(round($N/$SECS))") events/s, CPU ${C}s"

# Then groups of 1, 2 and 3 that have settled on an empty topic before the
# same events are produced into it, so every member consumes its share.
for INSTANCES in ${ONLY:-1 2 3}; do
    GROUP=kw-scale-$INSTANCES
    TOPIC=events-$INSTANCES
    tansu topic create "$TOPIC" --broker tcp://$BROKER --partitions 12 >/dev/null
    PIDS=()
    LOGS=()
    for i in $(seq "$INSTANCES"); do
        DIR=$WORK/$GROUP/$i
        mkdir -p "$DIR"
        kw_config "$DIR/kw.toml" "$BROKER" "$TOPIC" "$GROUP" "$DIR/checkpoints" "keywatch-state-$GROUP"
        KEYWATCH_LOG=info $KW run -c "$DIR/kw.toml" 2>"$DIR/kw.log" &
        PIDS+=($!)
        LOGS+=("$DIR/kw.log")
    done
    for _ in $(seq 300); do [ "$(owned "${LOGS[@]}")" = 12 ] && break; sleep 0.2; done
    [ "$(owned "${LOGS[@]}")" = 12 ] || { echo "group $GROUP did not settle"; tail -5 "${LOGS[@]}"; exit 1; }
    CPU0=()
    for p in "${PIDS[@]}"; do CPU0+=("$(cpu_seconds "$p")"); done
    python3 benches/group_progress.py "$BROKER" "$GROUP" "$TOPIC" "$N" >"$WORK/$GROUP/secs" &
    PROGRESS=$!
    T0=$(date +%s.%N)
    python3 tests/e2e/produce.py --brokers "$BROKER" --topic "$TOPIC" --key-field userIdentity.accessKeyId "$WORK/n.jsonl" >/dev/null
    PRODUCED=$(python3 -c "import time; print(round($(date +%s.%N) - $T0, 2))")
    wait $PROGRESS
    SECS=$(cat "$WORK/$GROUP/secs")
    CPU=()
    for p in "${PIDS[@]}"; do CPU+=("$(cpu_seconds "$p")"); done
    for p in "${PIDS[@]}"; do kill -TERM "$p"; done
    for p in "${PIDS[@]}"; do wait "$p" || true; done
    echo "-- $INSTANCES instance(s): producing took ${PRODUCED}s; every event applied and committed after ${SECS}s = $(python3 -c "print(round($N/$SECS))") events/s"
    for i in $(seq "$INSTANCES"); do
        LOG=${LOGS[$((i - 1))]}
        MSGS=$(grep -o 'consumer stopped and committed messages=[0-9]*' "$LOG" | grep -o '[0-9]*$' || echo 0)
        C=$(python3 -c "print(round(${CPU[$((i - 1))]} - ${CPU0[$((i - 1))]}, 2))")
        echo "   instance $i: $MSGS messages = $(python3 -c "print(round($MSGS/$SECS))") events/s, CPU ${C}s = $(python3 -c "print(round(100*$C/$SECS))")% of a core, $(python3 -c "print(round(1e6*$C/max($MSGS,1), 2))") us per event"
    done
done
