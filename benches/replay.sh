#!/usr/bin/env bash
# Replay of a long CloudTrail history stored as CloudTrail stores it (gzip
# documents per 5 minutes in the S3 layout): events/s and peak RSS with one
# thread and with two, and the findings compared with a replay of the same
# events read in order from a pipe (nothing held, nothing merged). Run by
# hand; needs python3.
#
#   benches/replay.sh [GB]      (default 10: gigabytes of uncompressed JSON)
set -euo pipefail
cd "$(dirname "$0")/.."
GB=${1:-10}
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT
cargo build --release --quiet
KW=target/release/keywatch

# A quarter of a 400-key fleet; `keywatch gen` writes about 870 bytes per
# CloudTrail event and ~550k events per 40 keys, 50 days at volume 0.25.
VOLUME=$(python3 -c "print(round(0.25 * $GB * 1e9 / 870 / (550e3 * 10 * 90 / 50), 4))")
GEN=(gen --format cloudtrail --keys 400 --days 90 --volume "$VOLUME" --seed 31 --attacks --attack-set full)
echo "-- writing ${GB} GB of CloudTrail history (volume $VOLUME)"
BYTES=$($KW "${GEN[@]}" 2>/dev/null | python3 benches/support/s3_layout.py "$WORK/trail")
FILES=$(find "$WORK/trail" -name '*.json.gz' | wc -l)
echo "$(python3 -c "print(round($BYTES / 1e9, 2))") GB of JSON in $FILES gzip files, $(du -sh "$WORK/trail" | cut -f1) on disk"

run() { # NAME ARGS...: replays, prints events/s and peak RSS
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.jsonl" 2>"$WORK/$name.log"
    read -r secs kb <"$WORK/$name.time"
    events=$(grep -o '[0-9]* events' "$WORK/$name.log" | head -1 | cut -d' ' -f1)
    echo "$name: $events events in ${secs}s = $(python3 -c "print(round($events / $secs))") events/s, peak RSS $((kb / 1024)) MB, $(wc -l <"$WORK/$name.jsonl") findings"
}
echo "-- replay"
run jobs1 $KW replay --log warn -p cloudtrail --jobs 1 "$WORK/trail"
run jobs2 $KW replay --log warn -p cloudtrail --jobs 2 "$WORK/trail"
echo "-- the same events in order through a pipe"
run piped bash -c "$KW ${GEN[*]} 2>/dev/null | $KW replay --log warn -p cloudtrail -"
for r in jobs1 jobs2; do
    if cmp -s "$WORK/piped.jsonl" "$WORK/$r.jsonl"; then
        echo "$r: findings identical to the piped replay"
    else
        echo "$r: findings DIFFER from the piped replay"; diff <(cut -c1-200 "$WORK/piped.jsonl") <(cut -c1-200 "$WORK/$r.jsonl") | head -5
        exit 1
    fi
done
