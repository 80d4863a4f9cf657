#!/usr/bin/env bash
# End-to-end throughput from a local tansu broker through decode and engine,
# against the ceiling measured in the same run: a bare rdkafka consumer of
# the same topic. Then end-to-end latency (broker timestamp to effect in the
# state) at half the measured rate. Run by hand; needs tansu and the Python
# confluent-kafka client (.ci/test installs both).
#
#   benches/kafka_e2e.sh [EVENTS] [KEYS]      (defaults: 1000000 100000)
#   KIND=heavy benches/kafka_e2e.sh 1060000 81
#   KW=/path/to/other/keywatch benches/kafka_e2e.sh ...   (another build)
#
# KIND=light (default) is one day of a large fleet from `keywatch gen` (many
# light keys, 12 partitions); KIND=heavy is KEYS busy keys with 14 days of
# history, each rotating through more networks, actions and clients than a
# key remembers (benches/support/heavy_events.py, 8 partitions). keywatch
# runs twice: with one apply thread, then with one per core.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/support/tansu.sh
EVENTS=${1:-1000000}
KEYS=${2:-100000}
KIND=${KIND:-light}
PORT=${PORT:-19092}
BROKER=127.0.0.1:$PORT
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet
cargo bench --no-run --quiet --bench kafka_bare 2>/dev/null
BARE=$(ls -t target/release/deps/kafka_bare-* | grep -v '\.d$' | head -1)
KW=${KW:-target/release/keywatch}

start_tansu "$PORT" "$WORK/tansu.log"
if [ "$KIND" = heavy ]; then
    tansu topic create events --broker tcp://$BROKER --partitions 8 >/dev/null
    python3 benches/support/heavy_events.py "$EVENTS" "$KEYS" 14 >"$WORK/n.jsonl"
else
    tansu topic create events --broker tcp://$BROKER --partitions 12 >/dev/null
    # CloudTrail-shaped events for about KEYS keys: one day of a large fleet.
    cloudtrail_events "$KW" "$EVENTS" "$KEYS" "$WORK/n.jsonl"
fi
N=$(wc -l <"$WORK/n.jsonl")
DISTINCT=$(python3 -c "import json,sys; print(len({json.loads(l)['userIdentity']['accessKeyId'] for l in open('$WORK/n.jsonl')}))")
python3 tests/e2e/produce.py --brokers "$BROKER" --topic events --key-field userIdentity.accessKeyId "$WORK/n.jsonl" >/dev/null
echo "topic holds $N CloudTrail events ($(( $(stat -c %s "$WORK/n.jsonl") / N )) bytes each) of $DISTINCT keys"

# The broker shares the machine: its CPU per event in each phase tells how
# much of the two cores is left to the consumer.
broker_cpu() {
    python3 -c "print(round(($(cpu_seconds "$TANSU_PID") - $1) * 1e6 / $N, 2))"
}

echo "-- ceiling: bare consumer"
B0=$(cpu_seconds "$TANSU_PID")
"$BARE" "$BROKER" events "$N" --bench
echo "broker CPU: $(broker_cpu "$B0") µs per event served"

# keywatch's progress is read from its group's committed offsets: committed
# every 100 ms here, so a run of a few seconds is timed to within that.
export COMMIT_MS=100
for threads in 1 0; do
    echo "-- keywatch run (decode + engine), kafka.apply_threads = $threads"
    APPLY_THREADS=$threads kw_config "$WORK/kw.toml" "$BROKER" events "kw-bench-$threads" "$WORK/checkpoints-$threads"
    B0=$(cpu_seconds "$TANSU_PID")
    KEYWATCH_LOG=warn /usr/bin/time -f "%U %S" -o "$WORK/cpu" $KW run -c "$WORK/kw.toml" 2>"$WORK/kw.log" &
    KWPID=$!
    read -r SECS STEADY < <(python3 benches/group_progress.py "$BROKER" "kw-bench-$threads" events "$N" --steady)
    pkill -TERM -P $KWPID; wait $KWPID || true
    read -r USR SYS <"$WORK/cpu"
    echo "broker CPU: $(broker_cpu "$B0") µs per event served"
    echo "keywatch CPU: $(python3 -c "print(round(($USR + $SYS) * 1e6 / $N, 2))") µs per event (user + system, including start and stop)"
    echo "keywatch: $N events in ${SECS}s including group join = $(python3 -c "print(round($N/$SECS))") events/s; steady state $STEADY events/s"
done

echo "-- latency at half that rate"
tansu topic create live --broker tcp://$BROKER --partitions 12 >/dev/null
HALF=$(python3 -c "print(round($N/$SECS/2))")
kw_config "$WORK/kw.toml" "$BROKER" live kw-live "$WORK/checkpoints-live"
KEYWATCH_LOG=info $KW run -c "$WORK/kw.toml" 2>"$WORK/live.log" &
KWPID=$!
sleep 3
VOLUME=$(python3 -c "print($EVENTS / ($KEYS * 1100.0))")
$KW gen --format cloudtrail --keys "$KEYS" --days 1 --volume "$VOLUME" --seed 10 \
    --brokers "$BROKER" --topic live --rate "$HALF" 2>"$WORK/gen.log" || { cat "$WORK/gen.log"; exit 1; }
sleep 3
kill -TERM $KWPID; wait $KWPID || true
grep -o 'latency_p50_ms=[^ ]* latency_p99_ms=[^ ]*' "$WORK/live.log" | sed "s/^/at $HALF events\/s: /" \
    || { echo "no latency line in keywatch's log:"; tail -5 "$WORK/live.log"; exit 1; }
