# Shared by the bench scripts (sourced): a local tansu broker, the events
# they feed it, and the keywatch config each instance runs with. Everything
# talks to 127.0.0.1 only.

# start_tansu PORT LOG: starts a tansu broker on 127.0.0.1:PORT (in memory,
# a background job of the caller, its pid in TANSU_PID) and waits until it
# listens.
start_tansu() {
    local url=tcp://127.0.0.1:$1
    tansu broker --storage-engine memory://tansu/ --listener-url "$url" \
        --advertised-listener-url "$url" >"$2" 2>&1 &
    TANSU_PID=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done
    echo "tansu did not listen on 127.0.0.1:$1" >&2
    return 1
}

# cpu_seconds PID: the CPU time (user + system) PID has used so far.
cpu_seconds() {
    awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$1/stat"
}

# cloudtrail_events KW EVENTS KEYS FILE: writes the first EVENTS of one day
# of CloudTrail traffic from about KEYS keys (`KW gen`) to FILE.
cloudtrail_events() {
    local volume
    volume=$(python3 -c "print($2 / ($3 * 1100.0))")
    "$1" gen --format cloudtrail --keys "$3" --days 1 --volume "$volume" --seed 9 -o "$4.all"
    head -n "$2" "$4.all" >"$4"
    rm -f "$4.all"
}

# kw_config FILE BROKER TOPIC GROUP DIR [CHANGELOG_TOPIC]: a `keywatch run`
# config for CloudTrail events with its checkpoints in DIR (and its own
# changelog topic when given, so groups in one run stay apart). APPLY_THREADS
# sets `kafka.apply_threads` (unset: keywatch's default, one per core);
# COMMIT_MS librdkafka's `auto.commit.interval.ms` (below `commit_interval`'s
# one-second floor, for a finer view of progress).
kw_config() {
    cat >"$1" <<TOML
[decode]
profile = "cloudtrail"
[kafka]
brokers = "$2"
topics = ["$3"]
group_id = "$4"
commit_interval = "1s"
${APPLY_THREADS:+apply_threads = $APPLY_THREADS}
[http]
listen = "127.0.0.1:0"
[checkpoint]
dir = "$5"
TOML
    if [ -n "${COMMIT_MS:-}" ]; then
        printf '[kafka.properties]\n"auto.commit.interval.ms" = "%s"\n' "$COMMIT_MS" >>"$1"
    fi
    if [ -n "${6:-}" ]; then
        printf '[changelog]\ntopic = "%s"\n' "$6" >>"$1"
    fi
}
