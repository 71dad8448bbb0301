#!/usr/bin/env bash
# Does a stalled Redis stall the worker?  The latency of a static location
# while the module's Redis sleeps most of the time and uploads wait on it,
# against the same location with Redis idle and no uploads, on one nginx
# worker, in one run (docs/performance.md, "Slow Redis").  A measurement,
# not a test: it exits 0 whatever the figures, and non-zero only when
# something broke.
#
#   make && bench/redis-slow.sh
#
# One nginx (bench/lib.sh: worker_processes 1) with two locations:
#   /static/  return 200 "ok";
#   /up/      upload on;  (sha256, upload_fsync on)
# and `upload_redis_timeout` set to each of REDIS_TIMEOUTS in turn (a fresh
# nginx and Redis for each).  For each:
#   baseline  wrk -t1 -c8 -d$DURATION --latency on /static/: Redis idle, no
#             uploads
#   uploads   the same wrk while UPLOADERS (4) curl loops PUT a BODY_KIB
#             (64) KiB body each to /up/ (info: what the uploads cost alone)
#   stalled   the same wrk while a loop sends `redis-cli DEBUG SLEEP 1` to
#             the module's Redis again and again (Redis asleep nearly all
#             the time) and the same upload loops run: the uploads wait on
#             Redis, or get 503 once upload_redis_timeout passes
# Redis 7 refuses DEBUG unless started with --enable-debug-command: the
# script restarts its private Redis with "--enable-debug-command local".
# Target: the p99 of /static/ while stalled < 20 ms (TARGET_MS).  Also
# printed: its ratio to the baseline, wrk's slowest request, the uploads'
# answers (code x count, median and max seconds) and how much of the wrk
# run Redis spent asleep.
#
# Environment:
#   DURATION        wrk's -d, per run (10s)
#   CONNECTIONS     wrk's -c (8); THREADS: wrk's -t (1)
#   UPLOADERS       concurrent upload loops (4)
#   BODY_KIB        the size of each upload (64)
#   REDIS_TIMEOUTS  the upload_redis_timeout of each run ("3s 500ms"; 3s
#                   is the module's default)
#   TARGET_MS       the target p99 (20)
# and those of bench/lib.sh, with other defaults: BENCH_DIR
# (build/bench/redis-slow), BENCH_PORT (8802), REDIS_PORT (6402).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=${BENCH_DIR:-$(cd "$HERE/.." && pwd)/build/bench/redis-slow}
BENCH_PORT=${BENCH_PORT:-8802}
REDIS_PORT=${REDIS_PORT:-6402}

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-1}
UPLOADERS=${UPLOADERS:-4}
BODY_KIB=${BODY_KIB:-64}
REDIS_TIMEOUTS=${REDIS_TIMEOUTS:-3s 500ms}
TARGET_MS=${TARGET_MS:-20}

for v in CONNECTIONS THREADS UPLOADERS BODY_KIB TARGET_MS; do
    case ${!v} in
    ''|*[!0-9]*|0) bench_die "$v must be a positive number" ;;
    esac
done

command -v wrk >/dev/null || bench_die "no wrk: apt-get install wrk"
command -v redis-cli >/dev/null || bench_die "no redis-cli: run \`make deps\`"

CASE_DESC[static]="return 200 (the measured location)"
CASE_CONF[static]="return 200 \"ok\";"
CASE_DESC[up]="module, sha256, fsync on"
CASE_CONF[up]="upload on;"
BENCH_WORKER_CONNECTIONS=4096

STOP=$BENCH_DIR/stop
declare -a LOOPS=()

# shellcheck disable=SC2317  # (the traps call it)
stop_loops() {
    local p

    touch "$STOP"
    for p in "${LOOPS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    LOOPS=()
    rm -f "$STOP"
}

# shellcheck disable=SC2317
cleanup() {
    local p

    touch "$STOP" 2>/dev/null || true
    for p in "${LOOPS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    bench_stop
}

trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_DIR"
rm -f "$STOP"

body=$BENCH_DIR/body.bin
head -c $((BODY_KIB * 1024)) /dev/urandom > "$body"

# upload loop N: PUT /up/wN-I until $STOP; "code seconds" per upload
upload_loop() {
    local n=$1 log=$2 i=0

    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' \
             --max-time 30 -T "$body" \
             "http://127.0.0.1:$BENCH_PORT/up/w$n-$i" >> "$log" 2>/dev/null \
            || echo "000 0" >> "$log"
    done
}

# Redis asleep nearly all the time: the time each DEBUG SLEEP ends
stall_loop() {
    local log=$1

    while [ ! -e "$STOP" ]; do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEBUG SLEEP 1 > /dev/null
        echo "$EPOCHREALTIME" >> "$log"
    done
}

start_uploads() {
    local n

    : > "$1"
    for n in $(seq "$UPLOADERS"); do
        upload_loop "$n" "$1" &
        LOOPS+=($!)
    done
}

# "code x count, ..." and "median max" seconds of the uploads in log $1
upload_summary() {
    local codes times

    codes=$(awk '{ print $1 }' "$1" | sort | uniq -c \
                | awk '{ printf "%s%s x %s", sep, $2, $1; sep = ", " }')
    times=$(awk '{ print $2 }' "$1" | sort -g | awk '
        { v[NR] = $1 } END { if (NR) printf "median %.2f s, max %.2f s", v[int((NR + 1) / 2)], v[NR] }')
    echo "${codes:-none}; ${times:-}"
}

echo "== machine"
bench_machine
echo "wrk:        -t$THREADS -c$CONNECTIONS -d$DURATION --latency, GET /static/"
echo "uploads:    $UPLOADERS curl loops, PUT of $BODY_KIB KiB each"
echo "redis:      $(redis-server --version | awk '{ print $3 }')"

declare -a LINES=()

for timeout in $REDIS_TIMEOUTS; do
    BENCH_HTTP_CONF="    upload_redis_timeout $timeout;"
    bench_start static up
    bench_redis_restart --enable-debug-command local
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEBUG SLEEP 0 | grep -qx OK \
        || bench_die "Redis refuses DEBUG SLEEP"

    # warm: nginx's Redis connection, the thread pool, the store
    for i in 1 2 3; do
        code=$(curl -sS -o /dev/null -w '%{http_code}' -T "$body" \
                    "http://127.0.0.1:$BENCH_PORT/up/warm$i")
        [ "$code" = 201 ] || bench_die "warm-up upload answered $code"
    done
    wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$BENCH_PORT/static/" \
        > /dev/null

    echo
    echo "== upload_redis_timeout $timeout (worker pid $NGX_WORKER)"
    url=http://127.0.0.1:$BENCH_PORT/static/
    wopts=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION")

    # baseline: Redis idle, no uploads
    read -r b_rps b_p99 b_bad b_err b_max <<< \
        "$(bench_wrk "$BENCH_DIR/wrk-base-$timeout.txt" "$url" "${wopts[@]}")"
    printf '%-26s %10s req/s  p99 %8s ms  max %8s ms  non-2xx %s, errors %s\n' \
        "baseline" "$b_rps" "$b_p99" "$b_max" "$b_bad" "$b_err"

    # uploads alone, Redis awake
    start_uploads "$BENCH_DIR/uploads-$timeout.log"
    sleep 1
    read -r u_rps u_p99 u_bad u_err u_max <<< \
        "$(bench_wrk "$BENCH_DIR/wrk-uploads-$timeout.txt" "$url" "${wopts[@]}")"
    stop_loops
    printf '%-26s %10s req/s  p99 %8s ms  max %8s ms  non-2xx %s, errors %s\n' \
        "uploads, Redis awake" "$u_rps" "$u_p99" "$u_max" "$u_bad" "$u_err"
    echo "   uploads: $(upload_summary "$BENCH_DIR/uploads-$timeout.log")"

    # Redis asleep, uploads waiting on it
    : > "$BENCH_DIR/sleeps-$timeout.log"
    stall_loop "$BENCH_DIR/sleeps-$timeout.log" &
    LOOPS+=($!)
    sleep 0.2
    start_uploads "$BENCH_DIR/stalled-$timeout.log"
    sleep 2
    t0=$EPOCHREALTIME
    read -r s_rps s_p99 s_bad s_err s_max <<< \
        "$(bench_wrk "$BENCH_DIR/wrk-stalled-$timeout.txt" "$url" "${wopts[@]}")"
    t1=$EPOCHREALTIME
    stop_loops
    asleep=$(awk -v a="$t0" -v b="$t1" '$1 > a && $1 - 1 < b {
                 s = ($1 - 1 < a) ? a : $1 - 1; e = ($1 > b) ? b : $1
                 t += e - s }
             END { printf "%.0f", 100 * t / (b - a) }' \
             "$BENCH_DIR/sleeps-$timeout.log")
    printf '%-26s %10s req/s  p99 %8s ms  max %8s ms  non-2xx %s, errors %s\n' \
        "Redis stalled + uploads" "$s_rps" "$s_p99" "$s_max" "$s_bad" "$s_err"
    echo "   uploads: $(upload_summary "$BENCH_DIR/stalled-$timeout.log")"
    echo "   Redis asleep (DEBUG SLEEP 1) ${asleep}% of the wrk run, $(wc -l < "$BENCH_DIR/sleeps-$timeout.log") sleeps in all"
    grep -c 'timed out' "$BENCH_DIR/nginx/logs/error.log" \
        | sed 's/^/   error.log: "timed out" x /' || true

    for n in "$b_bad" "$b_err" "$u_bad" "$u_err" "$s_bad" "$s_err"; do
        [ "$n" = 0 ] || bench_die "wrk on /static/ had failures (above)"
    done
    ratio=$(awk -v s="$s_p99" -v b="$b_p99" 'BEGIN { printf "%.1f", (b > 0) ? s / b : 0 }')
    verdict=$(awk -v s="$s_p99" -v t="$TARGET_MS" 'BEGIN { print (s < t) ? "PASS" : "FAIL" }')
    LINES+=("$(printf '%-46s %9s %9s  %s' \
        "timeout $timeout: /static/ p99 ms, Redis stalled" "$s_p99" "< $TARGET_MS" "$verdict")")
    LINES+=("$(printf '%-46s %9s' "   (baseline p99 $b_p99 ms; stalled / baseline" "$ratio x)")")
    LINES+=("$(printf '%-46s %9s' "   (req/s stalled / baseline" \
        "$(awk -v s="$s_rps" -v b="$b_rps" 'BEGIN { printf "%.2f", s / b }'))")")

    bench_stop
done

echo
echo "== results: /static/ on the worker that waits on a stalled Redis"
printf '%-46s %9s %9s\n' target value goal
printf '%s\n' "${LINES[@]}"
exit 0
